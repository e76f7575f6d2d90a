"""Slide pictures for ``torchmil.visualize`` from one low-resolution read, not one read per patch.

``torchmil.visualize.patches_to_canvas`` expects every patch shrunk to a small cell and
placed at ``(row, column)`` on a white canvas; ``draw_heatmap_wsi`` then colours those cells.
Reading every patch at level 0 to shrink it to 50 px costs minutes per slide.
:func:`slide_canvas` builds the same canvas from the pyramid level whose resolution is
closest to the cell size: it decodes only that level's tiles under the patches, each once,
resizes them band by band and cuts them into cells (the goals: 100 times faster on the demo
slides, 50 times on a CAMELYON16-size one; ``benchmarks/bench_labels_canvas.py``). Coords that
cannot belong to the slide (starting beyond it, or mostly on glass) raise an error naming
the slide instead of giving a blank canvas.

Frames (see :mod:`helpers.grid`): patches come in as ``coords_level0``, ``(x, y)`` level-0
corners; the canvas places them at ``(rows, cols)``, torchmil's order, the reverse of
``grid_xy``: ``rows = grid_y - grid_y.min()``, ``cols = grid_x - grid_x.min()``.

A level is read band by band by :class:`helpers.slide.LevelTiles` (only the tiles under the
patches, decoded by :class:`helpers.slide.TiffLevelReader` where it can).

Public API (``N`` patches)::

    canvas_rows_cols(coords_level0, patch_size_level0) -> (rows (N,), cols (N,))
    slide_canvas(slide, coords_level0, patch_size_level0, cell_size=50) -> (canvas, rows, cols)
    overlay_on_thumbnail(slide_or_thumbnail, coords_level0, values, patch_size_level0, ...)
        -> RGB image

The slow per-patch canvas these are checked against lives in :mod:`helpers.reference`.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from helpers.grid import check_coords_level0, grid_xy
from helpers.slide import LevelTiles, choose_level, open_slide, read_thumbnail

__all__ = ["canvas_rows_cols", "slide_canvas", "overlay_on_thumbnail"]

#: Level pixels held in memory at once while building a canvas (about 96 MB of RGB).
_BAND_PIXELS = 32 * 1024 * 1024
#: Level pixels read around every patch beyond its square (what resampling its edge reads).
_MARGIN_PX = 2
#: A patch shows tissue when one of ``_TISSUE_SAMPLES**2`` pixels spread over its cell does.
_TISSUE_SAMPLES = 10
#: :func:`slide_canvas` refuses coords when more than this share of the patches show no tissue.
MAX_GLASS_SHARE = 0.5


def _interpolation(shrink: float) -> int:
    """How to shrink a level by ``shrink`` (level pixels per canvas pixel): bilinear up to
    2 (the default level: as sharp, and several times faster than ``cv2.INTER_AREA`` at such
    odd factors), pixel-area averaging beyond, where bilinear would skip pixels and alias."""
    return cv2.INTER_AREA if shrink >= 2 else cv2.INTER_LINEAR


def _check_cell_size(cell_size: int) -> int:
    if int(cell_size) <= 0:
        raise ValueError(f"cell_size must be positive, got {cell_size}.")
    return int(cell_size)


def canvas_rows_cols(
    coords_level0: np.ndarray, patch_size_level0: int
) -> tuple[np.ndarray, np.ndarray]:
    """Canvas row and column of every patch: ``y // P`` and ``x // P``, shifted to start at 0.

    This is the convention of the earlier tutorial and of ``torchmil.visualize``: ``(row,
    column)``, the reverse of :func:`helpers.grid.grid_xy`'s ``(x, y)``.

    Arguments:
        coords_level0: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners.
        patch_size_level0: Patch side ``P`` in level-0 pixels.

    Returns:
        ``(rows, cols)``: two ``(N,)`` int64 arrays.
    """
    cells = grid_xy(coords_level0, int(patch_size_level0))
    if len(cells) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = cells[:, 1], cells[:, 0]
    return rows - rows.min(), cols - cols.min()


def slide_canvas(
    slide,
    coords_level0: np.ndarray,
    patch_size_level0: int,
    cell_size: int = 50,
    level: int | None = None,
    oversample: float = 1.0,
    *,
    level0_size: tuple[int, int] | None = None,
    check_tissue: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``torchmil.visualize`` canvas of a slide, from one low-resolution read.

    Same result as :func:`helpers.reference.slide_canvas_per_patch` up to resampling: cell
    ``(rows[i], cols[i])`` shows patch ``i``, cells without a patch are white.

    Arguments:
        slide: The path of a slide (a TIFF is then decoded with tifffile, several times
            faster), or an ``openslide.OpenSlide``.
        coords_level0: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners of the patches.
        patch_size_level0: Patch side in level-0 pixels (1024 for CAMELYON16 at 20x / 512 px).
        cell_size: Side of one patch on the canvas, in pixels.
        level: Pyramid level to read; ``None``: the coarsest on which a patch spans
            ``oversample * cell_size`` pixels.
        oversample: Level pixels per canvas pixel, at least: 1 reads the level closest to
            the cell size (fastest); 2 one twice as fine (closer to the per-patch texture).
        level0_size: ``(width, height)`` level-0 size of the slide the coords were made on
            (``helpers.formats.level0_size(attrs)``); a slide of another size is refused.
        check_tissue: Refuse coords whose patches mostly show no tissue (see Raises).

    Returns:
        canvas: uint8 ``((rows.max() + 1) * cell_size, (cols.max() + 1) * cell_size, 3)``.
        rows: ``(N,)`` int64 row of every patch (``y // patch_size_level0``, starting at 0).
        cols: ``(N,)`` int64 column of every patch (``x // patch_size_level0``, starting at 0).

    Raises:
        ValueError: naming the slide, when the coords cannot be its: a patch starts outside
            it, ``level0_size`` is not its size, or (``check_tissue``) more than
            :data:`MAX_GLASS_SHARE` of the patches show only glass.
    """
    coords_level0 = check_coords_level0(coords_level0, patch_size_level0)
    cell_size, patch_size_level0 = _check_cell_size(cell_size), int(patch_size_level0)
    rows, cols = canvas_rows_cols(coords_level0, patch_size_level0)
    if len(coords_level0) == 0:  # what patches_to_canvas returns for an empty bag
        return np.full((cell_size, cell_size, 3), 255, dtype=np.uint8), rows, cols
    source = slide
    slide, opened = open_slide(source, "slide")
    name = f"slide {Path(source).name}" if opened else f"slide {slide!r}"
    try:
        _check_inside(name, coords_level0, slide.dimensions, level0_size)
        level = _level(slide, level, patch_size_level0, cell_size * max(oversample, 1.0))
        with contextlib.closing(LevelTiles(slide, level, Path(source) if opened else None)) as t:
            canvas = _paint_canvas(t, coords_level0, patch_size_level0, rows, cols, cell_size)
    finally:
        if opened:
            slide.close()
    if check_tissue:
        _check_tissue(name, canvas, rows, cols, cell_size)
    return canvas, rows, cols


def _level(slide, level: int | None, patch_size_level0: int, min_px: float) -> int:
    """``level``, checked to be the slide's, or (``None``) the coarsest level on which a
    patch spans ``min_px`` pixels."""
    if level is None:
        level = choose_level(slide.level_downsamples, patch_size_level0, min_px)
    if not 0 <= level < slide.level_count:
        raise ValueError(f"level {level} not in the slide (it has {slide.level_count}).")
    return level


def _check_inside(
    name: str,
    coords_level0: np.ndarray,
    slide_size: tuple[int, int],
    level0_size: tuple[int, int] | None = None,
) -> None:
    """The coords must fit the slide: made on a slide of its size (when ``level0_size`` is
    known), every patch starting on it (TRIDENT's may reach past its right or bottom edge,
    never start beyond it)."""
    width, height = (int(v) for v in slide_size)
    if level0_size is not None and tuple(int(v) for v in level0_size) != (width, height):
        raise ValueError(
            f"{name} is {width} x {height} level-0 px but the coords were made on a slide of "
            f"{int(level0_size[0])} x {int(level0_size[1])} (level0_width/height of the coords "
            "file): are they another slide's coords?"
        )
    x, y = coords_level0[:, 0], coords_level0[:, 1]
    outside = (x < 0) | (y < 0) | (x >= width) | (y >= height)
    if outside.any():
        first = coords_level0[np.flatnonzero(outside)[0]]
        raise ValueError(
            f"{name}: {int(outside.sum())} of {len(coords_level0)} patches start outside the "
            f"slide ({width} x {height} level-0 px), the first at (x, y) = "
            f"({first[0]}, {first[1]}); the coords span x {x.min()}..{x.max()}, y "
            f"{y.min()}..{y.max()}. Are they another slide's coords, or not in level-0 pixels?"
        )


def _glass_patches(
    canvas: np.ndarray, rows: np.ndarray, cols: np.ndarray, cell_size: int
) -> np.ndarray:
    """Which patches show no tissue: ``(N,)`` bool, True where no pixel of a 10 x 10 grid
    spread over the patch's cell is tissue-coloured, that is neither grey nor dark (HSV
    saturation > 10 and value > 85 of 255: what TRIDENT's otsu segmenter whitens before it
    looks for tissue). Glass, the white beyond the slide and black are not tissue."""
    k = min(_TISSUE_SAMPLES, cell_size)
    offsets = ((np.arange(k) + 0.5) * cell_size / k).astype(np.int64)
    ys = (rows[:, None] * cell_size + offsets[None, :])[:, :, None]  # (N, k, 1)
    xs = (cols[:, None] * cell_size + offsets[None, :])[:, None, :]  # (N, 1, k)
    samples = canvas[ys, xs].reshape(len(rows), k * k, 3)  # (N, k * k, 3)
    hsv = cv2.cvtColor(np.ascontiguousarray(samples), cv2.COLOR_RGB2HSV)
    tissue = (hsv[..., 1] > 10) & (hsv[..., 2] > 85)
    return np.asarray(~tissue.any(axis=1))  # (N,): numpy types a reduction as maybe a scalar


def _check_tissue(
    name: str, canvas: np.ndarray, rows: np.ndarray, cols: np.ndarray, cell_size: int
) -> None:
    glass = _glass_patches(canvas, rows, cols, cell_size)
    if glass.mean() > MAX_GLASS_SHARE:
        raise ValueError(
            f"{name}: {int(glass.sum())} of {len(glass)} patches show no tissue, only glass "
            f"(more than {MAX_GLASS_SHARE:.0%}): are these coords of another slide? Pass this "
            "slide's own coords (its <name>_patches.h5), or check_tissue=False to draw them "
            "anyway."
        )


def _paint_canvas(
    tiles: LevelTiles,
    coords_level0: np.ndarray,
    patch_size_level0: int,
    rows: np.ndarray,
    cols: np.ndarray,
    cell_size: int,
) -> np.ndarray:
    """The canvas, band of rows by band of rows: each band decodes the tiles under its
    patches (a tile shared with the next band is kept for it), is resized and cut into
    cells."""
    n_rows, n_cols = int(rows.max()) + 1, int(cols.max()) + 1
    canvas = np.full((n_rows * cell_size, n_cols * cell_size, 3), 255, dtype=np.uint8)
    first_x, first_y = (int(v) // patch_size_level0 for v in coords_level0.min(axis=0))
    on_grid = bool(np.all(coords_level0 % patch_size_level0 == 0))
    extra = 0 if on_grid else 1  # patches off the grid reach into the next cell
    downsample = tiles.downsample
    patch_px = patch_size_level0 / downsample  # a patch's side on the level
    interpolation = _interpolation(patch_px / cell_size)
    occupied = np.zeros((n_rows, n_cols), dtype=bool)
    occupied[rows, cols] = True
    # every patch's square on the level, a few pixels wider (what resampling reads)
    corner = coords_level0 / downsample
    boxes = np.concatenate(
        [np.floor(corner) - _MARGIN_PX, np.ceil(corner + patch_px) + _MARGIN_PX], axis=1
    ).astype(np.int64)
    order = np.argsort(rows, kind="stable")
    band_rows = max(1, int(_BAND_PIXELS // max(n_cols * patch_px * patch_px, 1)))
    for r0 in range(0, n_rows, band_rows):
        r1 = min(r0 + band_rows, n_rows)
        inside = order[np.searchsorted(rows[order], r0) : np.searchsorted(rows[order], r1)]
        if len(inside) == 0:
            continue
        c0, c1 = int(cols[inside].min()), int(cols[inside].max()) + 1
        origin = ((first_x + c0) * patch_size_level0, (first_y + r0) * patch_size_level0)
        size = (
            int(math.ceil((c1 - c0 + extra) * patch_px)),
            int(math.ceil((r1 - r0 + extra) * patch_px)),
        )
        region = tiles.region(origin, size, tiles.tiles_under(boxes[inside]))
        band = _Band(r0, r1, c0, c1, origin)
        if on_grid:
            _paint_band_on_grid(canvas, region, band, occupied, patch_px, cell_size)
        else:
            for i in inside:
                cell = _cut_patch(region, (coords_level0[i] - origin) / downsample, patch_px)
                r, c = rows[i], cols[i]
                canvas[r * cell_size : (r + 1) * cell_size, c * cell_size : (c + 1) * cell_size] = (
                    cv2.resize(cell, (cell_size, cell_size), interpolation=interpolation)
                )
        next_top_level0 = (first_y + r1) * patch_size_level0
        tiles.forget_above(int(math.floor(next_top_level0 / downsample)) - _MARGIN_PX)
    return canvas


class _Band(NamedTuple):
    """Canvas rows ``[r0, r1)`` and columns ``[c0, c1)`` read at once, from ``origin_level0``."""

    r0: int
    r1: int
    c0: int
    c1: int
    origin_level0: tuple[int, int]


def _paint_band_on_grid(
    canvas: np.ndarray,
    region: np.ndarray,
    band: _Band,
    occupied: np.ndarray,
    patch_px: float,
    cell_size: int,
) -> None:
    """Patches on the grid: resize the band so that a patch is exactly ``cell_size`` pixels,
    whiten the cells without a patch, and copy the band onto the canvas."""
    n_cols, n_rows = band.c1 - band.c0, band.r1 - band.r0
    exact = (int(round(n_cols * patch_px)), int(round(n_rows * patch_px)))
    small = cv2.resize(
        region[: exact[1], : exact[0]],
        (n_cols * cell_size, n_rows * cell_size),
        interpolation=_interpolation(patch_px / cell_size),
    )
    empty = ~occupied[band.r0 : band.r1, band.c0 : band.c1]
    # (rows, cell, cols, cell, 3) -> (rows, cols, cell, cell, 3): a view of `small`
    small.reshape(n_rows, cell_size, n_cols, cell_size, 3).transpose(0, 2, 1, 3, 4)[empty] = 255
    canvas[band.r0 * cell_size : band.r1 * cell_size, band.c0 * cell_size : band.c1 * cell_size] = (
        small
    )


def _cut_patch(region: np.ndarray, corner: np.ndarray, patch_px: float) -> np.ndarray:
    """The patch whose top-left is at level pixel ``corner`` ``(x, y)`` of ``region``, black
    where it leaves the region (patches off the grid, overlapping ones)."""
    x, y = float(corner[0]), float(corner[1])
    x0, y0 = int(round(x)), int(round(y))
    x1, y1 = int(round(x + patch_px)), int(round(y + patch_px))
    patch = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
    src = region[max(y0, 0) : y1, max(x0, 0) : x1]
    patch[: src.shape[0], : src.shape[1]] = src
    return patch


def overlay_on_thumbnail(
    slide_or_thumbnail,
    coords_level0: np.ndarray,
    values: np.ndarray,
    patch_size_level0: int,
    level0_size: tuple[int, int] | None = None,
    cmap: str = "RdYlGn_r",
    alpha: float = 0.5,
    max_size: int = 1000,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> np.ndarray:
    """Per-patch values (labels, attention) drawn over the slide's real thumbnail.

    An alternative to the patch canvas for localization: the tissue between and around the
    patches stays visible. Patches whose value is NaN are left uncoloured.

    Arguments:
        slide_or_thumbnail: An ``openslide.OpenSlide``, a slide path, or an RGB thumbnail
            ``(h, w, 3)`` (then ``level0_size`` is required).
        coords_level0: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners of the patches.
        values: ``(N,)`` values, mapped to colours between ``vmin`` and ``vmax`` (0 and 1).
        patch_size_level0: Patch side in level-0 pixels.
        level0_size: ``(width, height)`` of the slide at level 0 (taken from the slide if one
            is given).
        cmap: A matplotlib colormap name.
        alpha: Opacity of the colours, in ``[0, 1]``.
        max_size: Longest side of the thumbnail read from a slide.
        vmin, vmax: Values mapped to the two ends of the colormap.

    Returns:
        uint8 RGB image ``(h, w, 3)`` of the thumbnail's size.
    """
    coords_level0 = check_coords_level0(coords_level0, patch_size_level0)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) != len(coords_level0):
        raise ValueError(f"{len(values)} values for {len(coords_level0)} patches.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    if vmax <= vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin}).")
    thumbnail, level0_size = _thumbnail_and_size(slide_or_thumbnail, level0_size, max_size)
    value_map = _value_map(
        thumbnail.shape[:2], coords_level0, values, int(patch_size_level0), level0_size
    )
    return _blend(thumbnail, value_map, cmap, alpha, vmin, vmax)


def _thumbnail_and_size(slide_or_thumbnail, level0_size, max_size: int):
    """``(thumbnail (h, w, 3) uint8, level0_size (width, height))`` from a slide or an array."""
    if isinstance(slide_or_thumbnail, np.ndarray):
        thumbnail = slide_or_thumbnail
        if thumbnail.ndim != 3 or thumbnail.shape[2] < 3:
            raise ValueError(f"thumbnail must be RGB (h, w, 3), got {thumbnail.shape}.")
        thumbnail = np.ascontiguousarray(thumbnail[..., :3]).astype(np.uint8)
        if level0_size is None:
            raise ValueError("level0_size=(width, height) is needed with a thumbnail array.")
        return thumbnail, level0_size
    slide, opened = open_slide(slide_or_thumbnail, "slide")
    try:
        return read_thumbnail(slide, max_size), level0_size or slide.dimensions
    finally:
        if opened:
            slide.close()


def _value_map(
    shape: tuple[int, int],
    coords_level0: np.ndarray,
    values: np.ndarray,
    patch_size_level0: int,
    level0_size: tuple[int, int],
) -> np.ndarray:
    """``(h, w)`` float map of the thumbnail: each patch's value over its box, NaN elsewhere."""
    h, w = shape
    scale_x, scale_y = w / float(level0_size[0]), h / float(level0_size[1])
    # patch edges on the thumbnail, rounded so that neighbouring patches share an edge
    x0 = np.clip(np.rint(coords_level0[:, 0] * scale_x).astype(int), 0, w)
    x1 = np.clip(np.rint((coords_level0[:, 0] + patch_size_level0) * scale_x).astype(int), 0, w)
    y0 = np.clip(np.rint(coords_level0[:, 1] * scale_y).astype(int), 0, h)
    y1 = np.clip(np.rint((coords_level0[:, 1] + patch_size_level0) * scale_y).astype(int), 0, h)
    value_map = np.full((h, w), np.nan)
    for i in np.flatnonzero(np.isfinite(values)):
        value_map[y0[i] : max(y1[i], y0[i] + 1), x0[i] : max(x1[i], x0[i] + 1)] = values[i]
    return value_map


def _blend(
    thumbnail: np.ndarray, value_map: np.ndarray, cmap: str, alpha: float, vmin: float, vmax: float
) -> np.ndarray:
    """The colours of ``value_map`` laid over ``thumbnail`` with opacity ``alpha`` (not NaN)."""
    import matplotlib

    painted = np.isfinite(value_map)
    colors = matplotlib.colormaps[cmap](np.clip((value_map - vmin) / (vmax - vmin), 0, 1))
    out = thumbnail.astype(np.float64)
    out[painted] = (1 - alpha) * out[painted] + alpha * 255.0 * colors[painted][:, :3]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
