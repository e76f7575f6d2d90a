"""Slide pictures for ``torchmil.visualize`` from one low-resolution read, not one read per patch.

``torchmil.visualize.patches_to_canvas`` expects every patch shrunk to a small cell and
placed at ``(row, column)`` on a white canvas; ``draw_heatmap_wsi`` then colours those cells.
Reading every patch at level 0 to shrink it to 50 px costs minutes per slide.
:func:`slide_canvas` builds the same canvas from the pyramid level whose resolution is
closest to the cell size, read once (in bands of rows), resized and cut into cells.

Frames (see :mod:`helpers.grid`): patches come in as ``coords_level0``, ``(x, y)`` level-0
corners; the canvas places them at ``(rows, cols)``, torchmil's order, the reverse of
``grid_xy``: ``rows = grid_y - grid_y.min()``, ``cols = grid_x - grid_x.min()``.

Public API (``N`` patches)::

    canvas_rows_cols(coords_level0, patch_size_level0) -> (rows (N,), cols (N,))
    slide_canvas(slide, coords_level0, patch_size_level0, cell_size=50) -> (canvas, rows, cols)
    overlay_on_thumbnail(slide_or_thumbnail, coords_level0, values, patch_size_level0, ...)
        -> RGB image
    TiffLevelReader.open(path, slide, level) -> reader of one tiled TIFF level, or None

The slow per-patch canvas these are checked against lives in :mod:`helpers.reference`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from helpers.formats import open_slide, read_thumbnail
from helpers.grid import check_coords_level0, choose_level, grid_xy
from helpers.trident import to_rgb

__all__ = ["canvas_rows_cols", "slide_canvas", "overlay_on_thumbnail", "TiffLevelReader"]

#: Level pixels held in memory at once while building a canvas (about 128 MB of RGBA).
_BAND_PIXELS = 32 * 1024 * 1024

#: What tifffile and its codecs raise for a file, a page layout or a tile they cannot read
#: (``TiffFileError`` is a ``ValueError``, imagecodecs' errors are ``RuntimeError``, a codec
#: that is not installed an ``ImportError``): openslide then reads instead.
_TIFF_FAILURES = (OSError, ValueError, KeyError, RuntimeError, ImportError)


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


class TiffLevelReader:
    """Decode only the tiles of one tiled RGB TIFF page that a window touches.

    openslide composes every region through cairo, which costs more than decoding the JPEG
    tiles; for TIFF-based slides (Aperio, generic tiled TIFF, the demo cohort) reading the tiles
    with tifffile is several times faster. :meth:`open` gives a reader only when a page has
    exactly the size of the openslide level and a probe read agrees with openslide.
    """

    def __init__(self, tif, page) -> None:
        self.tif, self.page = tif, page
        self.height, self.width = page.shape[:2]
        self.tile_height, self.tile_width = page.tilelength, page.tilewidth
        self.tiles_across = -(-self.width // self.tile_width)

    @classmethod
    def open(cls, path, slide, level: int, exact: bool = False) -> TiffLevelReader | None:
        """A reader of ``level`` of ``slide`` (the ``openslide.OpenSlide`` of ``path``) from
        the TIFF file itself, or ``None`` when openslide must read: not a TIFF, no tiled RGB
        page of the level's size, a file or codec tifffile cannot read, or a disagreement
        (any differing pixel value when ``exact``, else a mean difference of 2 or more)."""
        import tifffile

        if not str(path).lower().endswith((".tif", ".tiff", ".svs")):
            return None
        try:
            tif = tifffile.TiffFile(path)
        except _TIFF_FAILURES:
            return None
        try:
            page = cls._page_of_size(tif, *slide.level_dimensions[level])
            if page is not None:
                reader = cls(tif, page)
                if reader._agrees_with(slide, level, exact):
                    return reader
        except _TIFF_FAILURES:
            pass
        tif.close()
        return None

    @staticmethod
    def _page_of_size(tif, width: int, height: int):
        """The first tiled 8-bit interleaved RGB page of ``width x height``, or ``None``."""
        for page in tif.pages:
            if (
                page.is_tiled
                and page.shape[:2] == (height, width)
                and page.samplesperpixel == 3
                and page.dtype == np.uint8
                and page.planarconfig == 1
                and page.imagedepth == 1
            ):
                return page
        return None

    def _agrees_with(self, slide, level: int, exact: bool = False) -> bool:
        downsample = slide.level_downsamples[level]
        x, y = max(self.width // 2 - 32, 0), max(self.height // 2 - 32, 0)
        ours = self.read(x, y, 64, 64)
        location_level0 = (int(round(x * downsample)), int(round(y * downsample)))
        ref = to_rgb(np.asarray(slide.read_region(location_level0, level, (64, 64))))
        if ours.shape != ref.shape:
            return False
        difference = np.abs(ours.astype(int) - ref)
        return not difference.any() if exact else difference.mean() < 2

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB ``(h, w, 3)`` of the window at level pixel ``(x, y)``; white beyond the page."""
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x0 or y1 <= y0:
            return out
        page, tile_h, tile_w = self.page, self.tile_height, self.tile_width
        idx = [
            ty * self.tiles_across + tx
            for ty in range(y0 // tile_h, (y1 - 1) // tile_h + 1)
            for tx in range(x0 // tile_w, (x1 - 1) // tile_w + 1)
        ]
        segments = self.tif.filehandle.read_segments(
            [page.dataoffsets[i] for i in idx], [page.databytecounts[i] for i in idx], indices=idx
        )
        for data, i in segments:
            tile = page.decode(data, i, jpegtables=page.jpegtables)[0][0]
            ty, tx = (i // self.tiles_across) * tile_h, (i % self.tiles_across) * tile_w
            # overlap of the tile [ty, ty+tile_h) x [tx, tx+tile_w) with the window, on the page
            sy0, sy1 = max(ty, y0), min(ty + tile_h, y1)
            sx0, sx1 = max(tx, x0), min(tx + tile_w, x1)
            out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx, :3
            ]
        return out

    def close(self) -> None:
        self.tif.close()


class _LevelWindows:
    """RGB windows of one pyramid level, placed in level-0 pixels: tifffile's tiles when
    ``path`` is a TIFF it reads (:class:`TiffLevelReader`), openslide otherwise."""

    def __init__(self, slide, level: int, path: Path | None) -> None:
        self.slide, self.level = slide, level
        self.downsample = float(slide.level_downsamples[level])
        self.tiff = TiffLevelReader.open(path, slide, level) if path is not None else None

    def read(self, location_level0: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
        if self.tiff is not None:
            x, y = (int(round(v / self.downsample)) for v in location_level0)
            return self.tiff.read(x, y, *size)
        return to_rgb(np.asarray(self.slide.read_region(location_level0, self.level, size)))

    def close(self) -> None:
        if self.tiff is not None:
            self.tiff.close()


def slide_canvas(
    slide,
    coords_level0: np.ndarray,
    patch_size_level0: int,
    cell_size: int = 50,
    level: int | None = None,
    oversample: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``torchmil.visualize`` canvas of a slide, from one low-resolution read.

    Same result as reading every patch at level 0, resizing it to ``cell_size`` and calling
    ``torchmil.visualize.patches_to_canvas`` (see
    :func:`helpers.reference.slide_canvas_per_patch`), up to resampling: cell ``(rows[i],
    cols[i])`` shows patch ``i``, cells without a patch are white. The pyramid level read is
    the coarsest on which a patch still spans ``oversample * cell_size`` pixels (level 3, 128
    px, for 1024 px patches in 50 px cells); it is read in bands of rows, resized with
    ``cv2.resize``'s default (bilinear, like the per-patch way) so that a patch is exactly
    ``cell_size`` pixels, and cut into cells.

    Arguments:
        slide: The path of a slide, or an ``openslide.OpenSlide``. Give the path where you
            can: a TIFF-based slide is then decoded tile by tile with tifffile, several times
            faster (openslide does not say which file an open slide came from).
        coords_level0: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners of the patches.
        patch_size_level0: Patch side in level-0 pixels (1024 for CAMELYON16 at 20x / 512 px).
        cell_size: Side of one patch on the canvas, in pixels.
        level: Pyramid level to read; ``None`` picks it from ``oversample`` (see above).
        oversample: How many level pixels per canvas pixel the chosen level must have at least.
            1 reads the level closest to the cell size (fastest, a smoother picture than the
            per-patch way); 2 keeps the texture a level-0 read shows.

    Returns:
        canvas: uint8 ``((rows.max() + 1) * cell_size, (cols.max() + 1) * cell_size, 3)``.
        rows: ``(N,)`` int64 row of every patch (``y // patch_size_level0``, starting at 0).
        cols: ``(N,)`` int64 column of every patch (``x // patch_size_level0``, starting at 0).
    """
    coords_level0 = check_coords_level0(coords_level0, patch_size_level0)
    cell_size, patch_size_level0 = _check_cell_size(cell_size), int(patch_size_level0)
    rows, cols = canvas_rows_cols(coords_level0, patch_size_level0)
    if len(coords_level0) == 0:  # what patches_to_canvas returns for an empty bag
        return np.full((cell_size, cell_size, 3), 255, dtype=np.uint8), rows, cols
    source = slide
    slide, opened = open_slide(source, "slide")
    windows = None
    try:
        if level is None:
            min_px = cell_size * max(oversample, 1.0)
            level = choose_level(slide.level_downsamples, patch_size_level0, min_px)
        if not 0 <= level < slide.level_count:
            raise ValueError(f"level {level} not in the slide (it has {slide.level_count}).")
        windows = _LevelWindows(slide, level, Path(source) if opened else None)
        canvas = _paint_canvas(windows, coords_level0, patch_size_level0, rows, cols, cell_size)
        return canvas, rows, cols
    finally:
        if windows is not None:
            windows.close()
        if opened:
            slide.close()


class _Band(NamedTuple):
    """Canvas rows ``[r0, r1)`` and columns ``[c0, c1)`` read at once, from ``origin_level0``."""

    r0: int
    r1: int
    c0: int
    c1: int
    origin_level0: tuple[int, int]


def _paint_canvas(
    windows: _LevelWindows,
    coords_level0: np.ndarray,
    patch_size_level0: int,
    rows: np.ndarray,
    cols: np.ndarray,
    cell_size: int,
) -> np.ndarray:
    """The canvas, read band of rows by band of rows (only the columns a band needs)."""
    n_rows, n_cols = int(rows.max()) + 1, int(cols.max()) + 1
    canvas = np.full((n_rows * cell_size, n_cols * cell_size, 3), 255, dtype=np.uint8)
    first_x, first_y = (int(v) // patch_size_level0 for v in coords_level0.min(axis=0))
    on_grid = bool(np.all(coords_level0 % patch_size_level0 == 0))
    extra = 0 if on_grid else 1  # patches off the grid reach into the next cell
    patch_px = patch_size_level0 / windows.downsample  # a patch's side on the level
    occupied = np.zeros((n_rows, n_cols), dtype=bool)
    occupied[rows, cols] = True
    band_rows = max(1, int(_BAND_PIXELS // max(n_cols * patch_px * patch_px, 1)))
    for r0 in range(0, n_rows, band_rows):
        r1 = min(r0 + band_rows, n_rows)
        used = np.flatnonzero(occupied[r0:r1].any(axis=0))
        if len(used) == 0:
            continue
        c0, c1 = int(used[0]), int(used[-1]) + 1
        origin = ((first_x + c0) * patch_size_level0, (first_y + r0) * patch_size_level0)
        band = _Band(r0, r1, c0, c1, origin)
        size = (
            int(math.ceil((c1 - c0 + extra) * patch_px)),
            int(math.ceil((r1 - r0 + extra) * patch_px)),
        )
        region = windows.read(origin, size)
        if on_grid:
            _paint_band_on_grid(canvas, region, band, occupied, patch_px, cell_size)
        else:
            inside = np.flatnonzero((rows >= r0) & (rows < r1))
            for i in inside:
                corner = (coords_level0[i] - origin) / windows.downsample
                cell = _cut_patch(region, corner, patch_px)
                r, c = rows[i], cols[i]
                canvas[r * cell_size : (r + 1) * cell_size, c * cell_size : (c + 1) * cell_size] = (
                    cv2.resize(cell, (cell_size, cell_size))
                )
    return canvas


def _paint_band_on_grid(
    canvas: np.ndarray,
    region: np.ndarray,
    band: _Band,
    occupied: np.ndarray,
    patch_px: float,
    cell_size: int,
) -> None:
    """Patches on the grid: resize the band so that a patch is exactly ``cell_size`` pixels,
    then copy the occupied cells."""
    n_cols, n_rows = band.c1 - band.c0, band.r1 - band.r0
    exact = (int(round(n_cols * patch_px)), int(round(n_rows * patch_px)))
    small = cv2.resize(region[: exact[1], : exact[0]], (n_cols * cell_size, n_rows * cell_size))
    keep = occupied[band.r0 : band.r1, band.c0 : band.c1]
    keep = np.repeat(np.repeat(keep, cell_size, axis=0), cell_size, axis=1)
    target = canvas[
        band.r0 * cell_size : band.r1 * cell_size, band.c0 * cell_size : band.c1 * cell_size
    ]
    target[keep] = small[keep]


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
