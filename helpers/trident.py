"""TRIDENT's processing steps, small enough to read: segment, patch, encode.

For real slides run TRIDENT itself (see the README); these functions re-implement the same
steps of TRIDENT v0.3.0 (``run_batch_of_slides.py --segmenter otsu``) on any slide openslide
opens and write the same files, so the book can show each step and the demo cohort is made
the way TRIDENT makes CAMELYON16's:

1. :func:`segment_tissue` — TRIDENT's ``otsu`` segmenter: the slide read at 1.25x in tiles
   of 512 px; in each tile, near-grey and dark pixels whitened, an Otsu threshold of the
   greyscale image (specks under 60 px dropped), a second Otsu pass on the tissue found,
   holes under 5,000 px filled; then, as TRIDENT's contour step does, the mask resized to
   2,000 px high, holes filled and pieces of 1,000 px or less dropped;
2. :func:`patch_grid` — the ``patch_size_level0`` grid from (0, 0), keeping cells that
   touch tissue, row by row (by y, then x), as TRIDENT orders them;
3. :func:`extract_features` — every patch read at the target magnification from the
   pyramid (black beyond the slide's edge, as TRIDENT reads it) and passed through a
   patch encoder.

The files are read and written by :mod:`helpers.formats` (``read_coords``, ``save_coords``,
``save_features``, ``save_thumbnail``) and slides by :mod:`helpers.slide`; their layout and h5
attributes follow TRIDENT v0.3.0 (``{mag}x_{patch_size}px_{overlap}px_overlap``;
``patch_size_level0`` and ``target_magnification`` stored as floats; ``name``, ``savetodir``
and ``encoder`` on the ``features`` dataset).

Where this module still differs from TRIDENT v0.3.0, and why:

- TRIDENT's default segmenter is ``hest`` (a neural network with downloaded weights); only
  ``--segmenter otsu`` is re-implemented here (no weights, CPU only).
- TRIDENT turns the mask into polygons (simplified by 128 level-0 px) and keeps the grid
  cells whose square intersects them; here the cells are tested against the filled mask
  itself (a summed-area table), which differs by at most a mask pixel along the outline.
- TRIDENT truncates a level's downsample to an integer when it sizes the region it reads
  (``int(1.9997) == 1`` reads twice the area on a level whose size was rounded); here the
  level's true downsample is used.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import openslide
import torch

from helpers.progress import progress_bar
from helpers.slide import (
    TiffLevelReader,
    best_level,
    level0_magnification,
    read_level,
    slide_mpp,
    to_rgb,
)

#: TRIDENT's otsu segmenter: magnification and tile size it segments at.
SEG_MAGNIFICATION, SEG_TILE = 1.25, 512
#: TRIDENT's contour step resizes the mask to this height before finding contours.
CONTOUR_HEIGHT = 2000
#: Pieces of tissue of this area or less (px, on the 2,000-px-high mask) are dropped.
MIN_CONTOUR_AREA = 1000
#: Inside a tile: specks under this many pixels after the first pass are dropped, holes under
#: this many pixels after the second are filled (4-connected, at 1.25x).
MIN_SPECK, MAX_HOLE = 60, 5000


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of float ``values`` on a ``bins``-bin histogram spanning their range
    (the threshold is a bin centre; a constant input returns its value)."""
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        return lo
    hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    hist = hist.astype(np.float64)
    w0 = np.cumsum(hist)  # pixels at or below each bin
    w1 = np.cumsum(hist[::-1])[::-1]  # pixels at or above each bin
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = (np.cumsum((hist * centres)[::-1]) / np.maximum(w1[::-1], 1))[::-1]
    between = w0[:-1] * w1[1:] * (m0[:-1] - m1[1:]) ** 2
    return float(centres[int(np.argmax(between))])


def _grey(rgb: np.ndarray) -> np.ndarray:
    """Luminance in [0, 255] (ITU-R 709 weights, as scikit-image's ``rgb2gray``)."""
    return rgb.astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])


def _drop_small(mask: np.ndarray, min_size: int) -> np.ndarray:
    """``mask`` without its 4-connected pieces of fewer than ``min_size`` pixels."""
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_size
    keep[0] = False
    return keep[cast(np.ndarray, lab)] & mask  # lab: (H, W) int32 (OpenCV types any matrix)


def whitened_grey(rgb: np.ndarray) -> np.ndarray:
    """The image TRIDENT's first Otsu pass thresholds: grey pixels (HSV saturation <= 10 and
    value >= 70) and dark ones (value <= 85) set to white, then greyscale; float ``(h, w)``
    in [0, 255]. Tissue is darker than glass, so it lies below the threshold."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    grey_or_dark = ((hsv[..., 1] <= 10) & (hsv[..., 2] >= 70)) | (hsv[..., 2] <= 85)
    whitened = rgb.copy()
    whitened[grey_or_dark] = 255
    return _grey(whitened)


def read_at_magnification(
    slide: openslide.OpenSlide, magnification: float = SEG_MAGNIFICATION
) -> tuple[np.ndarray, float]:
    """The whole slide at ``magnification`` (1.25x: the scale TRIDENT segments at), for
    figures: RGB uint8 ``(h, w, 3)``, white where openslide has no pixels, and its level-0
    pixels per pixel."""
    seg_ds = (10.0 / magnification) / slide_mpp(slide)
    w0, h0 = slide.dimensions
    level = best_level(slide, seg_ds)
    image = read_level(slide, level)
    size = (int(round(w0 / seg_ds)), int(round(h0 / seg_ds)))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), seg_ds


def tissue_in_tile(rgb: np.ndarray) -> np.ndarray:
    """TRIDENT's two-pass Otsu on one RGB uint8 tile ``(h, w, 3)``: bool tissue ``(h, w)``.

    1. pure-black pixels (padding beyond the slide) become white;
    2. grey pixels (HSV saturation <= 10 and value >= 70) and dark ones (value <= 85) are
       whitened, the tile is turned to greyscale, and tissue is what lies below its Otsu
       threshold; pieces under 60 px are dropped;
    3. outside that tissue the tile is whitened (where a channel is not 0), and the Otsu
       threshold of the greyscale is taken again, now over the tissue's own colours;
       holes under 5,000 px are filled.
    """
    tile = rgb.copy()
    tile[(tile == 0).all(axis=-1)] = 255
    g = whitened_grey(tile)
    first = _drop_small(g < otsu_threshold(g), MIN_SPECK)
    kept = np.where(first[..., None], tile, np.where(tile > 0, 255, 0)).astype(np.uint8)
    g = _grey(kept)
    second = g < otsu_threshold(g)
    holes = _drop_small(~second, MAX_HOLE)  # background pieces that are large enough
    return second | (~second & ~holes)


def segment_tissue(
    slide: openslide.OpenSlide,
    magnification: float = SEG_MAGNIFICATION,
    tile_size: int = SEG_TILE,
    min_area: float = MIN_CONTOUR_AREA,
) -> tuple[np.ndarray, float]:
    """Tissue mask by TRIDENT's ``otsu`` segmenter (see :func:`tissue_in_tile`).

    The slide is read at ``magnification`` (1.25x: 8 um/px) in tiles of ``tile_size`` px
    from the level TRIDENT would read (:func:`best_level`), each tile segmented on its own
    (its own thresholds). The stitched mask is then treated as TRIDENT's contour step
    treats it: resized to 2,000 px high, holes filled, and pieces of ``min_area`` px or
    less (at that size) dropped.

    Returns:
        ``(mask, downsample)``: bool ``(height, width)`` mask (2,000 px high) and the
        level-0 pixels per mask pixel.
    """
    mpp = slide_mpp(slide)
    seg_ds = (10.0 / magnification) / mpp  # level-0 px per px at the segmentation scale
    width0, height0 = slide.dimensions
    out_w, out_h = int(round(width0 / seg_ds)), int(round(height0 / seg_ds))
    level = best_level(slide, seg_ds)
    level_ds = slide.level_downsamples[level]
    lw, lh = slide.level_dimensions[level]
    # the whole level once (black beyond the edge, as TRIDENT reads), then cut into tiles
    rgba = np.asarray(slide.read_region((0, 0), level, (lw, lh)))
    image = np.where(rgba[..., 3:] > 0, rgba[..., :3], 0).astype(np.uint8)
    step0 = round(tile_size * seg_ds)  # tile side in level-0 px
    side = round(step0 / level_ds)  # ... and on the level read
    mask = np.zeros((out_h, out_w), np.uint8)
    for y0 in range(0, height0, step0):
        for x0 in range(0, width0, step0):
            lx, ly = int(round(x0 / level_ds)), int(round(y0 / level_ds))
            region = np.zeros((side, side, 3), np.uint8)
            crop = image[ly : ly + side, lx : lx + side]
            region[: crop.shape[0], : crop.shape[1]] = crop
            if side != tile_size:
                region = cv2.resize(region, (tile_size, tile_size), interpolation=cv2.INTER_LINEAR)
            tx, ty = int(round(x0 / seg_ds)), int(round(y0 / seg_ds))
            piece = tissue_in_tile(region)[: out_h - ty, : out_w - tx]
            mask[ty : ty + piece.shape[0], tx : tx + piece.shape[1]] |= piece.astype(np.uint8)
    return _fill_and_drop(mask * 255, min_area), seg_ds * out_h / CONTOUR_HEIGHT


def _fill_and_drop(mask: np.ndarray, min_area: float) -> np.ndarray:
    """TRIDENT's contour step on a uint8 mask: resized (bilinear) to 2,000 px high; every
    outermost outline whose area minus its holes' exceeds ``min_area`` px is kept, filled.

    Returns:
        bool ``(2000, round(width * 2000 / height))``.
    """
    h, w = mask.shape
    scale = CONTOUR_HEIGHT / h
    small = cv2.resize(mask, (int(round(w * scale)), int(round(h * scale))))
    contours, hierarchy = cv2.findContours(small, cv2.RETR_TREE, cv2.CHAIN_APPROX_NONE)
    out = np.zeros(small.shape, np.uint8)
    if hierarchy is None:
        return out.astype(bool)
    parent = hierarchy[0][:, 3]
    keep = []
    # Python ints: OpenCV types the contours as a Sequence, indexed by int
    for i in np.flatnonzero(parent == -1).tolist():
        holes = sum(cv2.contourArea(contours[j]) for j in np.flatnonzero(parent == i).tolist())
        if cv2.contourArea(contours[i]) - holes > min_area:
            keep.append(contours[i])
    cv2.drawContours(out, keep, -1, 1, thickness=cv2.FILLED)
    return out.astype(bool)


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
        int64 ``(n_patches, 2)`` rows of ``(x, y)``, row by row (sorted by y, then x) as
        TRIDENT orders them.
    """
    patch_size_level0 = int(round(patch_size_level0))  # TRIDENT stores it as a float
    step = patch_size_level0 - int(overlap)
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
    iy, ix = np.nonzero(counts > 0)  # row-major: by y, then x
    return np.stack([xs[ix], ys[iy]], axis=1).astype(np.int64)


def coords_attributes(
    slide: openslide.OpenSlide,
    name: str,
    savetodir: str | os.PathLike,
    patch_size: int = 512,
    target_magnification: float = 20.0,
    overlap: int = 0,
) -> dict:
    """The attributes TRIDENT v0.3.0 stores on ``coords`` for ``slide`` (see
    :func:`grid_attributes`, which this calls with the slide's size and magnification)."""
    return grid_attributes(
        slide.dimensions,
        level0_magnification(slide),
        name,
        savetodir,
        patch_size,
        target_magnification,
        overlap,
    )


def grid_attributes(
    size_level0: tuple[int, int],
    level0_mag: int,
    name: str,
    savetodir: str | os.PathLike,
    patch_size: int = 512,
    target_magnification: float = 20.0,
    overlap: int = 0,
) -> dict:
    """The attributes TRIDENT v0.3.0 stores on ``coords``, with its types.

    Arguments:
        size_level0: the slide's ``(width, height)`` at level 0.
        level0_mag: its objective power (an int, :func:`level0_magnification`).

    Returns:
        The attributes. TRIDENT's ``--mag`` is a float, so ``target_magnification`` and
        ``patch_size_level0`` (computed as ``patch_size * level0_magnification //
        target_magnification``) are floats, e.g. 1024.0.
    """
    target = float(target_magnification)
    width, height = size_level0
    return {
        "patch_size": int(patch_size),
        "patch_size_level0": float(int(patch_size) * level0_mag // target),
        "level0_magnification": int(level0_mag),
        "target_magnification": target,
        "overlap": int(overlap),
        "name": name,
        "savetodir": str(savetodir),
        "level0_width": int(width),
        "level0_height": int(height),
    }


def read_patches(
    slide: openslide.OpenSlide,
    coords_level0: np.ndarray,
    patch_size_level0: float,
    patch_size: int,
    background: str = "black",
    path: str | Path | None = None,
) -> np.ndarray:
    """Read patches at the target magnification from the pyramid, as TRIDENT reads them.

    The level is the one whose downsample is within 0.1 of ``patch_size_level0 /
    patch_size`` (level 1 of a 40x slide at 20x), else the coarsest finer level, whose
    region is resized (bilinear, as TRIDENT). Beyond the slide's edge a patch is
    ``background``: ``"black"`` as TRIDENT (it drops openslide's alpha channel), or
    ``"white"`` for figures. With the slide's ``path``, patches inside a TIFF page are
    decoded by tifffile (:class:`helpers.slide.TiffLevelReader`, the same pixels, several
    times faster) when a probe read matches openslide's exactly.

    Returns:
        uint8 ``(n_patches, patch_size, patch_size, 3)``.
    """
    if background not in ("black", "white"):
        raise ValueError(f"background must be 'black' or 'white', not {background!r}")
    level = best_level(slide, patch_size_level0 / patch_size)
    downsample = slide.level_downsamples[level]
    size = int(round(patch_size_level0 / downsample))
    width, height = slide.level_dimensions[level]
    tiff = TiffLevelReader.open(path, slide, level, exact=True) if path else None
    out = np.empty((len(coords_level0), patch_size, patch_size, 3), np.uint8)
    try:
        for i, (x, y) in enumerate(coords_level0):
            x_level, y_level = int(round(x / downsample)), int(round(y / downsample))
            inside = x_level + size <= width and y_level + size <= height
            on_pixel = x_level * downsample == x and y_level * downsample == y
            if tiff is not None and inside and on_pixel:
                rgb = tiff.read(x_level, y_level, size, size)
            else:
                rgba = np.asarray(slide.read_region((int(x), int(y)), level, (size, size)))
                rgb = to_rgb(rgba) if background == "white" else rgba[..., :3]
            if size != patch_size:
                rgb = cv2.resize(rgb, (patch_size, patch_size), interpolation=cv2.INTER_LINEAR)
            out[i] = rgb
    finally:
        if tiff is not None:
            tiff.close()
    return out


@torch.inference_mode()
def extract_features(
    slide: openslide.OpenSlide,
    coords_level0: np.ndarray,
    attrs: dict,
    encoder: torch.nn.Module,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    progress: bool = False,
    path: str | Path | None = None,
) -> np.ndarray:
    """Encode every patch of ``coords_level0``: float32 ``(n_patches, dim)``, row i = patch i
    (float64 when the encoder computes in float64, so that storing them rounds only once).

    ``encoder`` is any module mapping uint8 patches ``(batch_size, 3, H, W)`` to
    ``(batch_size, dim)``; a model that expects normalised floats can be wrapped in a
    ``torch.nn.Sequential`` with its own transform.
    """
    encoder = encoder.eval().to(device)
    feats = []
    starts = range(0, len(coords_level0), batch_size)
    for start in progress_bar(starts, desc=str(attrs.get("name", "patches")), disable=not progress):
        batch = read_patches(
            slide,
            coords_level0[start : start + batch_size],
            attrs["patch_size_level0"],
            attrs["patch_size"],
            path=path,
        )
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).to(device)
        out = encoder(x)
        feats.append((out if out.dtype == torch.float64 else out.float()).cpu())
    if not feats:
        raise ValueError(f"{attrs.get('name')}: no patches to encode")
    return torch.cat(feats).numpy()
