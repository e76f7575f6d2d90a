"""The H&E stain vectors, one home: Ruifrok & Johnston's optical-density vectors (RGB).

Hematoxylin stains nuclei purple, eosin stains cytoplasm and stroma pink; light through a
stained section is absorbed as ``exp(-optical density)`` (Beer-Lambert), and a pixel's optical
density is a mix of these vectors. :mod:`helpers.synth` paints with the first two;
:mod:`helpers.encoder` unmixes a patch with all three (the residual completes the basis).
Values from Ruifrok & Johnston (2001), "Quantification of histochemical staining by color
deconvolution", Anal. Quant. Cytol. Histol. 23(4); unnormalised, as published.
"""

from __future__ import annotations

#: Optical density per RGB channel of hematoxylin.
HEMATOXYLIN = (0.65, 0.70, 0.29)
#: Optical density per RGB channel of eosin.
EOSIN = (0.07, 0.99, 0.11)
#: The third vector of Ruifrok & Johnston's H&E matrix (completes the basis).
RESIDUAL = (0.27, 0.57, 0.78)
