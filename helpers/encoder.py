"""A weight-free patch encoder that behaves like a foundation model: a fixed filter bank.

TRIDENT's encoders (CONCH, UNI, ...) are foundation models whose weights must be
downloaded, several of them gated. The demo cohort instead uses :class:`StainStatsEncoder`,
a fixed, deterministic network (nothing is learned or downloaded) that measures what a
pathologist looks at first, and spreads it over many dimensions as a foundation model does:

1. colour deconvolution of the RGB patch into hematoxylin (nuclei) and eosin (cytoplasm,
   stroma) optical densities (Ruifrok & Johnston), at 2 um/px;
2. a bank of Gaussian-derivative filters (blob, ridge and edge detectors) applied to both
   stains at three scales of a pyramid (2, 4 and 8 um/px), so that small lymphocytes, large
   tumour nuclei, fibres and nests each excite their own filters;
3. pooled statistics of every response (its mean absolute value and mean, and its largest
   and smallest value over 4x4-pixel cells), plus the stains' own means and spreads:
   ``N_STATS`` numbers;
4. the statistics centred and decorrelated (ZCA whitening) by fixed constants
   (:data:`CALIBRATION_FILE`, measured once on the demo cohort's patches by
   :func:`calibrate`), then mixed into ``dim`` = 384 dimensions by a fixed +-1 Hadamard
   matrix. Like a foundation model's embedding, every dimension then carries a little of
   every property: tumour differs from normal tissue in most dimensions at once, not in a
   few named ones.

It is a ``torch.nn.Module`` mapping patches ``(batch_size, 3, H, W)`` (uint8 RGB, or float
in [0, 1]) to features ``(batch_size, dim)``, so :func:`helpers.trident.extract_features`
accepts any other module with the same contract (a pretrained network with real weights,
for example). ``python -m helpers.encoder --calibrate DIR`` re-measures the constants.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from helpers import stains

# Ruifrok & Johnston stain matrix (rows: hematoxylin, eosin, residual), RGB optical density
_STAINS = torch.tensor([stains.HEMATOXYLIN, stains.EOSIN, stains.RESIDUAL], dtype=torch.float64)
_STAINS = _STAINS / _STAINS.norm(dim=1, keepdim=True)
_UNMIX = torch.linalg.inv(_STAINS)  # float64: OD (rgb) @ _UNMIX -> concentrations

#: Fixed centring and whitening of the statistics, measured by :func:`calibrate`.
CALIBRATION_FILE = Path(__file__).with_name("encoder_calibration.npz")
#: Whitening floors the covariance's eigenvalues at this share of the largest one, so that
#: directions in which the tissue hardly varies (JPEG noise) are not blown up.
EIGENVALUE_FLOOR = 1e-3
#: Output scale: normal tissue varies by about 4 units per dimension.
GAIN = 8.0
N_FILTERS, N_SCALES, N_STAINS = 6, 3, 2
#: statistics per patch: 4 per filter response, plus 5 of the stains themselves
N_STATS = 4 * N_FILTERS * N_SCALES * N_STAINS + 5


def filter_bank(
    sigma: float = 1.2, half: int = 3, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Gaussian-derivative filters ``(6, 1, 2 * half + 1, 2 * half + 1)``: Laplacian of
    Gaussian (blobs: nuclei), the three second derivatives ``xx, yy, xy`` (ridges: fibres,
    rims) and the two first derivatives ``x, y`` (edges), each with zero mean."""
    r = torch.arange(-half, half + 1, dtype=torch.float64)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    g = torch.exp(-(xx**2 + yy**2) / (2 * sigma**2))
    g = g / g.sum()
    s2 = sigma**2
    gxx = (xx**2 / s2 - 1) / s2 * g
    gyy = (yy**2 / s2 - 1) / s2 * g
    gxy = xx * yy / s2**2 * g
    bank = [-(gxx + gyy), gxx, gyy, gxy, -xx / s2 * g, -yy / s2 * g]
    bank = [k - k.mean() for k in bank]
    bank = [k / k.abs().sum() for k in bank]
    return torch.stack(bank).unsqueeze(1).to(dtype)


def hadamard_mixing(n_stats: int, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A fixed ``(n_stats, dim)`` matrix of +-1 / sqrt(n_stats): columns 1.. of a Sylvester
    Hadamard matrix (exact integers, the same on every machine). Its rows are every third
    row, so that they use all the bits of the column index: with the first ``n_stats`` rows
    of an order-512 matrix, columns ``j`` and ``j + 256`` would be equal."""
    order = 2 ** math.ceil(math.log2(max(3 * n_stats, dim + 1)))
    h = scipy.linalg.hadamard(order)[np.arange(n_stats) * 3, 1 : dim + 1]
    return torch.tensor(h / math.sqrt(n_stats), dtype=dtype)


def load_calibration(path: Path = CALIBRATION_FILE) -> tuple[torch.Tensor, torch.Tensor]:
    """``(center, whiten)``: float32 ``(n_stats,)`` and ``(n_stats, n_stats)``; zeros and the
    identity when not calibrated yet."""
    if not path.exists():
        return torch.zeros(N_STATS), torch.eye(N_STATS)
    with np.load(path) as data:
        center, whiten = data["center"], data["whiten"]
    if center.shape != (N_STATS,) or whiten.shape != (N_STATS, N_STATS):
        raise ValueError(f"{path}: calibration of {center.shape} statistics, expected {N_STATS}")
    return torch.from_numpy(center).float(), torch.from_numpy(whiten).float()


class StainStatsEncoder(torch.nn.Module):
    """Hand-designed H&E features spread over ``dim`` dimensions; no learned weights.

    The patch is first average-pooled by ``pool`` (4 turns a 20x patch, 0.5 um/px, into
    2 um/px).

    ``dtype`` is the arithmetic: float32 (the default) for speed, or float64, which the demo
    cohort uses (:func:`helpers.demo.process_slide`). Float32 sums round differently with
    each CPU's kernels (MKL, oneDNN and ATen pick theirs per instruction set), and storing the
    features as float16 turns some of those last bits into other values; float64 results
    differ between machines by about 1e-16 of their size, so rounding them once to float16
    gives the same bytes everywhere.

    Shapes:
        input ``(batch_size, 3, H, W)`` uint8 or float in [0, 1];
        output ``(batch_size, dim)`` in ``dtype``.
    """

    # its buffers (set in __init__, in the arithmetic's dtype): the stain unmixing matrix
    # (3, 3), the filter bank (12, 1, 7, 7), the centre (n_stats,) and the mixing (n_stats, dim)
    unmix: torch.Tensor
    bank: torch.Tensor
    center: torch.Tensor
    mixing: torch.Tensor

    def __init__(
        self,
        pool: int = 4,
        dim: int = 384,
        calibrated: bool = True,
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, not {dtype}")
        self.pool, self.dim = pool, dim
        center, whiten = (
            load_calibration() if calibrated else (torch.zeros(N_STATS), torch.eye(N_STATS))
        )
        # constants computed in float64, then rounded once to the arithmetic's dtype
        mixing = whiten.double() @ hadamard_mixing(N_STATS, dim, torch.float64)
        mixing = mixing * (GAIN if calibrated else 1.0)  # (n_stats, dim)
        bank = filter_bank(dtype=torch.float64).repeat(N_STAINS, 1, 1, 1)
        self.register_buffer("unmix", _UNMIX.to(dtype), persistent=False)
        self.register_buffer("bank", bank.to(dtype), persistent=False)
        self.register_buffer("center", center.to(dtype), persistent=False)
        self.register_buffer("mixing", mixing.to(dtype), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        """The arithmetic's floating-point type (float32 or float64)."""
        return self.bank.dtype

    @property
    def min_patch_px(self) -> int:
        """The smallest patch side it reads: ``pool``, then the two pyramid steps and the
        4x4 robust maximum (64 px with the default ``pool=4``)."""
        return self.pool * 16

    def _pool(self, patches: torch.Tensor) -> torch.Tensor:
        """Average ``pool x pool`` blocks: ``(B, 3, H / pool, W / pool)`` in ``self.dtype``.
        uint8 patches on the CPU go through OpenCV's area resize (ten times faster than
        converting them to float first; it rounds each block mean to a whole grey level, in
        integer arithmetic, so the same on every CPU)."""
        b, c, h, w = patches.shape
        if (
            patches.dtype != torch.uint8
            or patches.device.type != "cpu"
            or h % self.pool
            or w % self.pool
        ):
            return F.avg_pool2d(patches.to(self.dtype), self.pool)
        size = (w // self.pool, h // self.pool)
        nhwc = patches.permute(0, 2, 3, 1)  # a view: (B, H, W, 3) RGB images
        if nhwc.is_contiguous():  # patches read as images, permuted to (B, 3, H, W)
            images = nhwc.numpy()
            pooled = np.stack([cv2.resize(i, size, interpolation=cv2.INTER_AREA) for i in images])
            return torch.from_numpy(pooled).permute(0, 3, 1, 2).to(self.dtype)
        planes = patches.reshape(b * c, h, w).numpy()
        pooled = np.stack([cv2.resize(p, size, interpolation=cv2.INTER_AREA) for p in planes])
        return torch.from_numpy(pooled).reshape(b, c, size[1], size[0]).to(self.dtype)

    def statistics(self, patches: torch.Tensor) -> torch.Tensor:
        """The raw statistics ``(batch_size, n_stats)``, before centring and mixing."""
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
        x = self._pool(patches)  # (B, 3, h, w) at 2 um/px
        od = torch.log(scale / x.clamp(min=scale / 255.0))  # optical density
        conc = torch.einsum("bchw,cs->bshw", od, self.unmix)[:, :2].clamp(min=0)  # H, E
        tissue = (od.mean(1, keepdim=True) > 0.12).to(self.dtype)
        stats = [
            tissue.mean((1, 2, 3)).unsqueeze(1),
            conc.mean((2, 3)),
            conc.std((2, 3)),
        ]
        level = conc
        for step in range(N_SCALES):
            if step:
                level = F.avg_pool2d(level, 2)
            response = F.conv2d(level, self.bank, padding=3, groups=N_STAINS)  # (B, 12, h, w)
            pooled = F.avg_pool2d(response, 4)
            stats += [
                response.abs().mean((2, 3)),  # energy of the response
                response.mean((2, 3)),  # its balance of positive and negative parts
                pooled.amax((2, 3)),  # strongest positive response (4x4 cells)
                -pooled.amin((2, 3)),  # strongest negative response
            ]
        return torch.cat(stats, dim=1) * 10.0

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """``(batch_size, 3, height, width)`` RGB patches (uint8 or [0, 1] floats) ->
        ``(batch_size, dim)`` features in ``self.dtype``."""
        return (self.statistics(patches) - self.center) @ self.mixing


@torch.inference_mode()
def calibrate(root: str | Path, max_patches_per_slide: int = 200) -> Path:
    """Measure the mean and the whitening matrix of the statistics over the patches of the
    demo cohort at ``root`` (at most ``max_patches_per_slide`` per slide, evenly spaced) and
    write :data:`CALIBRATION_FILE`."""
    import openslide

    from helpers.formats import read_coords
    from helpers.layout import CohortLayout
    from helpers.trident import read_patches

    paths = CohortLayout(Path(root))
    encoder = StainStatsEncoder(calibrated=False, dtype=torch.float64)  # the same everywhere
    rows = []
    for coords_path in sorted(paths.coords_dir.glob("*.h5")):
        attrs, coords = read_coords(coords_path)
        step = max(1, len(coords) // max_patches_per_slide)
        wsi = paths.wsi(attrs["name"])
        with openslide.OpenSlide(str(wsi)) as slide:
            batch = read_patches(
                slide, coords[::step], attrs["patch_size_level0"], attrs["patch_size"], path=wsi
            )
        rows.append(encoder.statistics(torch.from_numpy(batch).permute(0, 3, 1, 2)).numpy())
    stats = np.concatenate(rows).astype(np.float64)  # (n_patches, n_stats)
    eigenvalues, vectors = np.linalg.eigh(np.cov(stats.T))
    eigenvalues = np.maximum(eigenvalues, 0) + EIGENVALUE_FLOOR * eigenvalues.max()
    whiten = vectors @ np.diag(eigenvalues**-0.5) @ vectors.T  # ZCA
    np.savez_compressed(
        CALIBRATION_FILE,
        center=stats.mean(0).astype(np.float32),
        whiten=whiten.astype(np.float32),
    )
    return CALIBRATION_FILE


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3 or sys.argv[1] != "--calibrate":
        sys.exit("usage: python -m helpers.encoder --calibrate DEMO_DIR")
    print(calibrate(sys.argv[2]))
