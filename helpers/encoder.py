"""A weight-free patch encoder: stain and nucleus statistics, computed with torch.

TRIDENT's encoders (CONCH, UNI, ...) are foundation models whose weights must be
downloaded, several of them gated. The demo cohort instead uses :class:`StainStatsEncoder`,
a fixed, deterministic filter bank that measures what a pathologist looks at first:

1. colour deconvolution of the RGB patch into hematoxylin (nuclei) and eosin (cytoplasm,
   stroma) optical densities (Ruifrok & Johnston);
2. blob responses of the hematoxylin channel at several scales (differences of Gaussians),
   which respond to nuclei of matching size: small lymphocytes vs large tumour nuclei;
3. pooled statistics (means, spreads, upper quantiles) of all of the above.

It is a ``torch.nn.Module`` mapping patches ``(batch_size, 3, H, W)`` (uint8 RGB, or float
in [0, 1]) to features ``(batch_size, dim)``, so :func:`helpers.trident.extract_features`
accepts any other module with the same contract (a pretrained network with real weights,
for example).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from helpers import stains

# Ruifrok & Johnston stain matrix (rows: hematoxylin, eosin, residual), RGB optical density
_STAINS = torch.tensor([stains.HEMATOXYLIN, stains.EOSIN, stains.RESIDUAL], dtype=torch.float64)
_STAINS = _STAINS / _STAINS.norm(dim=1, keepdim=True)
_UNMIX = torch.linalg.inv(_STAINS).to(torch.float32)  # OD (rgb) @ _UNMIX -> concentrations


# Fixed affine calibration (mean, std of each raw statistic over the patches of the demo
# cohort's slides), so that features come out roughly zero-mean and unit-variance, as the
# normalised embeddings of a foundation model do. Constants, not learned weights.
_MEAN = [
    0.7034,
    0.3853,
    0.3907,
    1.4681,
    0.1789,
    0.1238,
    0.7724,
    0.0836,
    0.2928,
    0.8185,
    1.8228,
    0.1981,
    0.288,
    0.7874,
    2.2099,
    0.2099,
    0.2404,
    0.6564,
    1.0914,
    0.1919,
    0.1954,
    0.5347,
    1.2295,
    0.1613,
    0.1542,
    0.4198,
    0.6712,
    0.1229,
]
_STD = [
    0.3602,
    0.2079,
    0.1437,
    0.3355,
    0.0957,
    0.0588,
    0.3208,
    0.044,
    0.1637,
    0.3409,
    0.4313,
    0.1085,
    0.1574,
    0.323,
    0.5364,
    0.1124,
    0.1283,
    0.2645,
    0.2751,
    0.1019,
    0.1014,
    0.2098,
    0.3356,
    0.0852,
    0.0787,
    0.1638,
    0.2305,
    0.0679,
]
CALIBRATION: tuple[list[float], list[float]] = (_MEAN, _STD)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


class StainStatsEncoder(torch.nn.Module):
    """Hand-designed H&E features; no learned weights.

    The patch is first average-pooled by ``pool`` (4 turns a 20x patch, 0.5 um/px, into
    2 um/px). Blob detectors are differences of Gaussians ``G(sigma) - G(1.6 sigma)``
    applied to the hematoxylin map at three resolutions (1x, 1/2 and 1/4), so a few small
    kernels cover nuclei from about 4 um to 18 um across.

    Shapes:
        input ``(batch_size, 3, H, W)`` uint8 or float in [0, 1];
        output ``(batch_size, dim)`` float32 with ``dim = 8 + 4 * len(scales)`` (28).
    """

    #: (pyramid step, sigma in pixels of that step) of each blob detector
    scales: tuple[tuple[int, float], ...] = ((1, 1.0), (1, 1.5), (2, 1.0), (2, 1.5), (4, 1.1))

    def __init__(self, pool: int = 4):
        super().__init__()
        self.pool = pool
        self.register_buffer("unmix", _UNMIX.clone(), persistent=False)
        self.register_buffer("center", torch.tensor(CALIBRATION[0]), persistent=False)
        self.register_buffer("scale", torch.tensor(CALIBRATION[1]), persistent=False)
        for i, (_, s) in enumerate(self.scales):
            self.register_buffer(f"g{i}a", _gaussian_kernel(s), persistent=False)
            self.register_buffer(f"g{i}b", _gaussian_kernel(1.6 * s), persistent=False)

    @property
    def dim(self) -> int:
        return 8 + 4 * len(self.scales)

    @staticmethod
    def _blur(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        r = k.numel() // 2
        x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
        return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))

    @staticmethod
    def _top(t: torch.Tensor) -> torch.Tensor:
        """A robust maximum: the largest value of the 4x4-pooled map, per patch."""
        return F.avg_pool2d(t, 4).amax((1, 2, 3))

    @property
    def min_patch_px(self) -> int:
        """The smallest patch side it reads: ``pool``, then the 4x nucleus scale, then the 4x4
        robust maximum (64 px with the default ``pool=4``)."""
        return self.pool * 16

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``(batch_size, 3, height, width)`` RGB patches (uint8 or [0, 1] floats) ->
        ``(batch_size, dim)`` float32 features."""
        if patches.ndim != 4 or patches.shape[1] != 3:
            raise ValueError(
                "patches must have shape (batch_size, 3, height, width), "
                f"got {tuple(patches.shape)}"
            )
        if min(patches.shape[2:]) < self.min_patch_px:
            raise ValueError(
                f"patches of {tuple(patches.shape[2:])} px are too small: StainStatsEncoder(pool="
                f"{self.pool}) needs at least {self.min_patch_px} x {self.min_patch_px} px."
            )
        scale = 255.0 if patches.dtype == torch.uint8 else 1.0
        x = F.avg_pool2d(patches.float(), self.pool)
        od = torch.log(scale / x.clamp(min=scale / 255.0))  # optical density (B, 3, h, w)
        conc = torch.einsum("bchw,cs->bshw", od, self.unmix)
        hema, eos = conc[:, 0:1].clamp(min=0), conc[:, 1:2].clamp(min=0)
        tissue = (od.mean(1, keepdim=True) > 0.12).float()
        feats = [
            tissue.mean((1, 2, 3)),
            hema.mean((1, 2, 3)),
            hema.std((1, 2, 3)),
            self._top(hema),
            eos.mean((1, 2, 3)),
            eos.std((1, 2, 3)),
            self._top(eos),
            (hema * eos).mean((1, 2, 3)),
        ]
        pyramid = {1: hema, 2: F.avg_pool2d(hema, 2), 4: F.avg_pool2d(hema, 4)}
        for i, (step, _) in enumerate(self.scales):
            h = pyramid[step]
            dog = self._blur(h, getattr(self, f"g{i}a")) - self._blur(h, getattr(self, f"g{i}b"))
            pos = dog.clamp(min=0)
            feats += [
                pos.mean((1, 2, 3)) * 10,
                dog.std((1, 2, 3)) * 10,
                self._top(pos) * 10,
                (pos > 0.05).float().mean((1, 2, 3)),
            ]
        return (torch.stack(feats, dim=1) - self.center) / self.scale
