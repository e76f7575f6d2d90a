"""TRIDENT's processing steps, small enough to read: segment, patch, encode.

For real slides run TRIDENT itself (see the README); these functions do the same steps
on any slide openslide opens and write the same files, so the book can show each step and
the demo cohort is made the way TRIDENT makes CAMELYON16's:

1. :func:`segment_tissue` — Otsu threshold on the saturation of a low-resolution level
   (TRIDENT's ``--segmenter otsu``), cleaned with a median blur and a morphological close;
2. :func:`patch_grid` — the ``patch_size_level0`` grid from (0, 0), keeping cells that
   touch tissue;
3. :func:`extract_features` — every patch read at the target magnification from the
   pyramid and passed through a patch encoder.

File layout and h5 attributes follow TRIDENT v0.3 (``{mag}x_{patch_size}px_{overlap}px_overlap``).
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import h5py
import numpy as np
import openslide
import torch
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from helpers.fileio import atomic_path
from helpers.labels import read_coords  # noqa: F401  (one reader of coords files)


def objective_power(slide: openslide.OpenSlide) -> int:
    """Level-0 magnification: the slide's objective power, else 40 when mpp < 0.3 (as TRIDENT)."""
    power = slide.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
    if power:
        return int(round(float(power)))
    mpp = slide.properties.get(openslide.PROPERTY_NAME_MPP_X)
    if mpp is None:
        raise ValueError("The slide has neither objective power nor mpp; cannot pick a level.")
    return 40 if float(mpp) < 0.3 else 20


def read_level(slide: openslide.OpenSlide, level: int) -> np.ndarray:
    """A whole pyramid level as RGB uint8 ``(height, width, 3)``; transparent areas white."""
    w, h = slide.level_dimensions[level]
    return to_rgb(np.asarray(slide.read_region((0, 0), level, (w, h))))


def to_rgb(rgba: np.ndarray) -> np.ndarray:
    """openslide's RGBA ``(..., 4)`` to RGB ``(..., 3)`` over a white background."""
    rgb = rgba[..., :3].copy()
    rgb[rgba[..., 3] == 0] = 255
    return rgb


def segment_tissue(
    slide: openslide.OpenSlide, target_downsample: float = 32.0, min_area: float = 0.002
) -> tuple[np.ndarray, float]:
    """Tissue mask of a low-resolution level by Otsu on the HSV saturation.

    Arguments:
        slide: an open slide.
        target_downsample: the level used is the one closest to this downsample.
        min_area: drop pieces smaller than this fraction of the level's area.

    Returns:
        ``(mask, downsample)``: bool ``(height, width)`` at that level, and its downsample.
    """
    level = slide.get_best_level_for_downsample(target_downsample)
    rgb = read_level(slide, level)
    sat = cv2.medianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1], 7)
    _, mask = cv2.threshold(sat, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area * mask.size
    return keep[lab], float(slide.level_downsamples[level])


def patch_grid(
    tissue: np.ndarray,
    downsample: float,
    level0_size: tuple[int, int],
    patch_size_level0: int,
    overlap: int = 0,
) -> np.ndarray:
    """Level-0 top-left corners of the grid cells that touch tissue.

    Arguments:
        tissue: bool mask ``(height, width)`` at a level of ``downsample``.
        level0_size: ``(width, height)`` of level 0.
        patch_size_level0: patch side in level-0 pixels; the grid step is
            ``patch_size_level0 - overlap`` and starts at (0, 0).

    Returns:
        int64 ``(n_patches, 2)`` rows of ``(x, y)``, sorted by x then y.
    """
    step = patch_size_level0 - overlap
    width, height = level0_size
    xs = np.arange(0, width, step)
    ys = np.arange(0, height, step)
    # tissue pixels per grid cell, from a summed-area table of the mask
    sat = cv2.integral(tissue.astype(np.uint8))
    h, w = tissue.shape

    def edges(v0: np.ndarray, limit: int) -> np.ndarray:
        return np.clip(np.floor(v0 / downsample).astype(int), 0, limit)

    x0, x1 = edges(xs, w), edges(xs + patch_size_level0 + downsample - 1, w)
    y0, y1 = edges(ys, h), edges(ys + patch_size_level0 + downsample - 1, h)
    counts = sat[y1][:, x1] - sat[y1][:, x0] - sat[y0][:, x1] + sat[y0][:, x0]
    iy, ix = np.nonzero(counts > 0)
    coords = np.stack([xs[ix], ys[iy]], axis=1).astype(np.int64)
    return coords[np.lexsort((coords[:, 1], coords[:, 0]))]


def coords_attributes(
    slide: openslide.OpenSlide,
    name: str,
    savetodir: str | os.PathLike,
    patch_size: int = 512,
    target_magnification: float = 20.0,
    overlap: int = 0,
) -> dict:
    """The attributes TRIDENT stores on ``coords`` (formats.md)."""
    level0_mag = objective_power(slide)
    width, height = slide.dimensions
    return {
        "patch_size": int(patch_size),
        "patch_size_level0": int(patch_size * level0_mag // target_magnification),
        "level0_magnification": int(level0_mag),
        "target_magnification": float(target_magnification),
        "overlap": int(overlap),
        "name": name,
        "savetodir": str(savetodir),
        "level0_width": int(width),
        "level0_height": int(height),
    }


def save_coords(path: str | os.PathLike, coords: np.ndarray, attrs: dict) -> None:
    """Write ``<slide>_patches.h5``: dataset ``coords`` int64 ``(n_patches, 2)`` with ``attrs``."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ds = f.create_dataset("coords", data=np.asarray(coords, dtype=np.int64))
        ds.attrs.update(attrs)


def read_patches(
    slide: openslide.OpenSlide, coords: np.ndarray, patch_size_level0: int, patch_size: int
) -> np.ndarray:
    """Read patches at the target magnification from the pyramid (not level 0 and resize).

    Uses the pyramid level whose downsample is ``patch_size_level0 / patch_size`` when the
    slide has it (it does for 40x slides at 20x); otherwise the nearest finer level, resized.

    Returns:
        uint8 ``(n_patches, patch_size, patch_size, 3)``.
    """
    want = patch_size_level0 / patch_size
    level = slide.get_best_level_for_downsample(want + 1e-6)
    size = int(round(patch_size_level0 / slide.level_downsamples[level]))
    out = np.empty((len(coords), patch_size, patch_size, 3), np.uint8)
    for i, (x, y) in enumerate(coords):
        rgb = to_rgb(np.asarray(slide.read_region((int(x), int(y)), level, (size, size))))
        if size != patch_size:
            rgb = cv2.resize(rgb, (patch_size, patch_size), interpolation=cv2.INTER_AREA)
        out[i] = rgb
    return out


@torch.inference_mode()
def extract_features(
    slide: openslide.OpenSlide,
    coords: np.ndarray,
    attrs: dict,
    encoder: torch.nn.Module,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> np.ndarray:
    """Encode every patch of ``coords``: float32 ``(n_patches, dim)``, row i = patch i.

    ``encoder`` is any module mapping uint8 patches ``(batch_size, 3, H, W)`` to
    ``(batch_size, dim)``; a model that expects normalised floats can be wrapped in a
    ``torch.nn.Sequential`` with its own transform.
    """
    encoder = encoder.eval().to(device)
    feats = []
    starts = range(0, len(coords), batch_size)
    for start in tqdm(starts, desc=str(attrs.get("name", "patches")), disable=not progress):
        batch = read_patches(
            slide,
            coords[start : start + batch_size],
            attrs["patch_size_level0"],
            attrs["patch_size"],
        )
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)
        feats.append(encoder(x).float().cpu())
    if not feats:
        raise ValueError(f"{attrs.get('name')}: no patches to encode")
    return torch.cat(feats).numpy().astype(np.float32)


def save_features(
    path: str | os.PathLike,
    features: np.ndarray,
    coords: np.ndarray,
    coords_attrs: dict,
    encoder_name: str,
) -> None:
    """Write ``features_<encoder>/<slide>.h5``: ``features`` ``(n_patches, dim)`` and ``coords``."""
    if len(features) != len(coords):
        raise ValueError(f"{len(features)} feature rows but {len(coords)} coords")
    path = Path(path)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=features)
        f.attrs.update(
            {"name": coords_attrs["name"], "savetodir": str(path.parent), "encoder": encoder_name}
        )
        ds = f.create_dataset("coords", data=np.asarray(coords, dtype=np.int64))
        ds.attrs.update(coords_attrs)


def save_thumbnail(slide: openslide.OpenSlide, path: str | os.PathLike, size: int = 1000) -> None:
    """Save a JPEG thumbnail whose longest side is ``size`` px (as TRIDENT's ``thumbnails/``)."""
    thumb = slide.get_thumbnail((size, size)).convert("RGB")
    with atomic_path(path) as tmp:
        thumb.save(tmp, format="JPEG", quality=90)
