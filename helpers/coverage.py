"""Tumour fraction of every patch, by summed-area table, without one read per patch.

The slow way reads a ``patch_size_level0 x patch_size_level0`` window of the level-0 mask for
every patch (:func:`helpers.reference.tumor_fraction_per_patch`). Here the mask is read
once, at a low-resolution pyramid level where a patch still spans at least ``min_patch_px``
pixels (64 by default), or the XML polygons are rasterised once at that scale; a summed-area
table then gives the tumour area of every patch with four look-ups. The map is processed in
horizontal bands, so memory stays bounded on gigapixel slides.

Public API (``N`` patches; ``coords_level0`` ``(N, 2)`` int level-0 ``(x, y)`` corners)::

    tumor_fraction_from_mask(mask, coords_level0, patch_size_level0, tumor_value=2, level=None)
        -> (N,) float64 in [0, 1]
    tumor_fraction_from_xml(xml_path, coords_level0, patch_size_level0, level0_size=None)
        -> (N,) float64 in [0, 1]
    box_fractions(read_rows, map_size, boxes) -> (N,) covered share of each box on a map
    mask_values(mask, patch_size_level0) -> (256,) pixel count of every mask value
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from helpers.annotations import EXCLUDE_GROUPS, TUMOR_GROUPS, fill_polygons, read_polygons
from helpers.formats import LabelInputError
from helpers.grid import check_coords_level0
from helpers.slide import choose_level, open_slide

__all__ = [
    "MIN_PATCH_PX",
    "MIN_PATCH_PX_XML",
    "BAND_PIXELS",
    "box_fractions",
    "tumor_fraction_from_mask",
    "tumor_fraction_from_xml",
    "mask_values",
    "check_mask_size",
]

#: A patch spans at least this many pixels (per side) on the low-resolution map.
MIN_PATCH_PX = 64
#: The same for rasterised XML polygons: cv2.fillPoly also fills the pixels an edge crosses,
#: a bias of about half a pixel along the outline, so polygons get a finer map.
MIN_PATCH_PX_XML = 128
#: Pixels of the low-resolution map held in memory at once (a band of whole rows).
BAND_PIXELS = 16 * 1024 * 1024


# A mask level must hold the full ``min_patch_px`` per patch (unlike a canvas, which lets a
# level 0.1% short of the bar pass): on a slide whose level sizes were rounded (downsample
# 16.003 for 16) the next finer level is read, which keeps the fractions within 0.02 of the
# level-0 ones.
MASK_LEVEL_RTOL = 1e-6


def box_fractions(
    read_rows: Callable[[int, int], np.ndarray],
    map_size: tuple[int, int],
    boxes: np.ndarray,
    band_pixels: int = BAND_PIXELS,
) -> np.ndarray:
    """Fraction of each box covered by a binary map, with one summed-area table per band.

    Arguments:
        read_rows: ``read_rows(r0, r1)`` returns rows ``r0:r1`` of the map, shape
            ``(r1 - r0, map_width)``, nonzero where tumor.
        map_size: ``(map_width, map_height)``.
        boxes: ``(N, 4)`` int boxes ``x0, y0, x1, y1`` in map pixels (end exclusive); they may
            extend beyond the map, where the map counts as 0.

    Returns:
        ``(N,)`` float64: covered area / box area.
    """
    n = len(boxes)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    width, height = map_size
    band_rows = max(1, band_pixels // max(width, 1))
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    area = np.maximum((x1 - x0) * (y1 - y0), 1).astype(np.float64)
    cx0, cx1 = np.clip(x0, 0, width), np.clip(x1, 0, width)
    cy0, cy1 = np.clip(y0, 0, height), np.clip(y1, 0, height)
    inside = (cx1 > cx0) & (cy1 > cy0)
    order = np.argsort(cy0[inside], kind="stable")
    idx = np.flatnonzero(inside)[order]
    start = 0
    while start < len(idx):
        r0 = int(cy0[idx[start]])
        stop = start
        r1 = r0
        # grow the band while it stays within band_rows (always take at least one box)
        while stop < len(idx) and (
            stop == start or int(cy1[idx[stop]]) - r0 <= max(band_rows, r1 - r0)
        ):
            r1 = max(r1, int(cy1[idx[stop]]))
            stop += 1
        sel = idx[start:stop]
        band = np.ascontiguousarray(read_rows(r0, r1) != 0, dtype=np.uint8)
        sat = cv2.integral(band)  # (r1 - r0 + 1, width + 1), int32
        by0, by1 = cy0[sel] - r0, cy1[sel] - r0
        bx0, bx1 = cx0[sel], cx1[sel]
        sums = sat[by1, bx1] - sat[by0, bx1] - sat[by1, bx0] + sat[by0, bx0]
        out[sel] = sums / area[sel]
        start = stop
    return out


def _boxes_on_map(
    coords_level0: np.ndarray, patch_size_level0: int, scale: float, origin: tuple[int, int]
) -> np.ndarray:
    """Level-0 patch squares as ``(N, 4)`` int boxes on a map of ``scale`` level-0 px/pixel."""
    ox, oy = origin
    x0 = np.rint((coords_level0[:, 0] - ox) / scale)
    y0 = np.rint((coords_level0[:, 1] - oy) / scale)
    x1 = np.rint((coords_level0[:, 0] + patch_size_level0 - ox) / scale)
    y1 = np.rint((coords_level0[:, 1] + patch_size_level0 - oy) / scale)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# tumor fractions


def _window_under_patches(
    coords_level0: np.ndarray,
    patch_size_level0: int,
    downsample: float,
    level_size: tuple[int, int],
) -> tuple[int, int, int, int]:
    """The part of a pyramid level under the patches, in whole level pixels:
    ``(x0, y0, width, height)``, clipped to the level's ``(width, height)``."""
    x0 = max(int(math.floor(coords_level0[:, 0].min() / downsample)), 0)
    y0 = max(int(math.floor(coords_level0[:, 1].min() / downsample)), 0)
    x1 = min(
        int(math.ceil((coords_level0[:, 0].max() + patch_size_level0) / downsample)),
        level_size[0],
    )
    y1 = min(
        int(math.ceil((coords_level0[:, 1].max() + patch_size_level0) / downsample)),
        level_size[1],
    )
    return x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)


def tumor_fraction_from_mask(
    mask,
    coords_level0: np.ndarray,
    patch_size_level0: int,
    tumor_value: int = 2,
    level: int | None = None,
    *,
    level0_size: tuple[int, int] | None = None,
    min_patch_px: int = MIN_PATCH_PX,
) -> np.ndarray:
    """Tumor fraction of every patch from a pyramidal mask, read once at a low-resolution level.

    Arguments:
        mask: Path of a pyramidal single-channel mask TIFF (``<name>_mask.tif``) or an open
            ``openslide.OpenSlide`` of it. Pixel value ``tumor_value`` marks tumor.
        coords_level0: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners of the patches.
        patch_size_level0: Patch side in level-0 pixels (1024 for CAMELYON16 at 20x / 512 px).
        tumor_value: Mask value of tumor pixels (2 for the book's masks; 1 for some ASAP masks).
        level: Pyramid level to read. ``None`` picks the coarsest level on which a patch still
            spans ``min_patch_px`` pixels.
        level0_size: ``(width, height)`` of the slide at level 0; when given, a mask of another
            size is rejected.
        min_patch_px: See ``level``.

    Returns:
        fractions: ``(N,)`` float64 in ``[0, 1]``, same order as ``coords_level0``. Parts of a patch
        beyond the mask count as not tumor.
    """
    coords_level0 = check_coords_level0(coords_level0)
    slide, opened = open_slide(mask, "mask")
    try:
        check_mask_size(slide, level0_size, mask)
        if len(coords_level0) == 0:
            return np.zeros(0, dtype=np.float64)
        if level is None:
            level = choose_level(
                slide.level_downsamples, patch_size_level0, min_patch_px, rtol=MASK_LEVEL_RTOL
            )
        if not 0 <= level < slide.level_count:
            raise LabelInputError(f"level {level} not in the mask (it has {slide.level_count}).")
        downsample = float(slide.level_downsamples[level])
        mx0, my0, width, height = _window_under_patches(
            coords_level0, patch_size_level0, downsample, slide.level_dimensions[level]
        )
        boxes = _boxes_on_map(coords_level0, patch_size_level0, downsample, (0, 0))
        boxes -= np.array([mx0, my0, mx0, my0])

        def read_rows(r0: int, r1: int) -> np.ndarray:
            loc = (int(round(mx0 * downsample)), int(round((my0 + r0) * downsample)))
            region = np.asarray(slide.read_region(loc, level, (width, r1 - r0)))
            return region[:, :, 0] == tumor_value

        return box_fractions(read_rows, (width, height), boxes)
    finally:
        if opened:
            slide.close()


def tumor_fraction_from_xml(
    xml_path,
    coords_level0: np.ndarray,
    patch_size_level0: int,
    level0_size: tuple[int, int] | None = None,
    *,
    min_patch_px: int = MIN_PATCH_PX_XML,
    tumor_groups: Sequence[str] = TUMOR_GROUPS,
    exclude_groups: Sequence[str] = EXCLUDE_GROUPS,
) -> np.ndarray:
    """Tumor fraction of every patch from ASAP XML polygons, rasterised once at low resolution.

    Tumor polygons (groups ``_0``, ``_1``, ``Tumor``) are filled, then exclusion polygons
    (group ``_2``) are cleared, with ``cv2.fillPoly`` and sub-pixel vertex precision, on a map
    where a patch spans ``min_patch_px`` pixels (a power-of-two fraction of level 0).

    Arguments:
        xml_path: ASAP XML file (level-0 coordinates).
        coords_level0: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners of the patches.
        patch_size_level0: Patch side in level-0 pixels.
        level0_size: ``(width, height)`` of the slide at level 0; parts of patches beyond it
            count as not tumor. ``None``: no clipping.
        min_patch_px: Pixels per patch side on the rasterised map.
        tumor_groups, exclude_groups: See :func:`read_polygons`.

    Returns:
        fractions: ``(N,)`` float64 in ``[0, 1]``, same order as ``coords_level0``.
    """
    coords_level0 = check_coords_level0(coords_level0)
    tumor, exclude = read_polygons(xml_path, tumor_groups, exclude_groups)
    if len(coords_level0) == 0:
        return np.zeros(0, dtype=np.float64)
    if not tumor:
        return np.zeros(len(coords_level0), dtype=np.float64)
    scale = float(2 ** max(int(math.floor(math.log2(patch_size_level0 / min_patch_px))), 0))
    ox = int(coords_level0[:, 0].min())
    oy = int(coords_level0[:, 1].min())
    x_end = int(coords_level0[:, 0].max()) + patch_size_level0
    y_end = int(coords_level0[:, 1].max()) + patch_size_level0
    if level0_size is not None:
        x_end = min(x_end, int(level0_size[0]))
        y_end = min(y_end, int(level0_size[1]))
    width = max(int(math.ceil((x_end - ox) / scale)), 0)
    height = max(int(math.ceil((y_end - oy) / scale)), 0)
    boxes = _boxes_on_map(coords_level0, patch_size_level0, scale, (ox, oy))

    def read_rows(r0: int, r1: int) -> np.ndarray:
        band = np.zeros((r1 - r0, width), dtype=np.uint8)
        origin = (ox, oy + r0 * scale)
        fill_polygons(band, tumor, 1, scale, origin)
        fill_polygons(band, exclude, 0, scale, origin)
        if level0_size is not None:  # pixels past the slide edge are not tumor
            band[:, max(int((level0_size[0] - ox) // scale), 0) :] = 0
            last = int((level0_size[1] - oy) // scale) - r0
            band[max(last, 0) :, :] = 0
        return band

    return box_fractions(read_rows, (width, height), boxes)


def check_mask_size(slide, level0_size, mask) -> None:
    """The mask's level 0 must be the slide's (``level0_width/height`` of the coords file)."""
    if level0_size is not None and tuple(slide.dimensions) != tuple(level0_size):
        name = mask if isinstance(mask, (str, os.PathLike)) else "(open slide)"
        raise LabelInputError(
            f"mask {name} is {slide.dimensions[0]}x{slide.dimensions[1]} at level 0 but the "
            f"slide is {level0_size[0]}x{level0_size[1]} (level0_width/height of the coords "
            "file, else the slide in --wsi_dir): is it the mask of another slide?"
        )


def mask_values(mask, patch_size_level0: int, min_patch_px: int = MIN_PATCH_PX) -> np.ndarray:
    """Pixel count of every value 0..255 of a mask, on the level the labels are read from
    (read in bands of rows): int64 ``(256,)``."""
    slide, opened = open_slide(mask, "mask")
    try:
        level = choose_level(
            slide.level_downsamples, patch_size_level0, min_patch_px, rtol=MASK_LEVEL_RTOL
        )
        downsample = float(slide.level_downsamples[level])
        width, height = slide.level_dimensions[level]
        rows = max(1, BAND_PIXELS // max(width, 1))
        counts = np.zeros(256, dtype=np.int64)
        for r0 in range(0, height, rows):
            n = min(rows, height - r0)
            band = np.asarray(
                slide.read_region((0, int(round(r0 * downsample))), level, (width, n))
            )
            counts += np.bincount(band[:, :, 0].ravel(), minlength=256)
        return counts
    finally:
        if opened:
            slide.close()
