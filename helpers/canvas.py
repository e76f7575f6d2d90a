"""Slide pictures for ``torchmil.visualize`` from one low-resolution read, not one read per patch.

``torchmil.visualize.patches_to_canvas`` expects every patch shrunk to a small cell and
placed at ``(row, column)`` on a white canvas; ``draw_heatmap_wsi`` then colours those cells.
Reading every patch at level 0 to shrink it to 50 px costs minutes per slide.
:func:`slide_canvas` builds the same canvas from the pyramid level whose resolution is
closest to the cell size, read once (in bands of rows), resized and cut into cells.

Public API (``N`` patches)::

    patch_grid_indices(coords, patch_size_level0) -> (rows (N,), cols (N,))
    slide_canvas(slide, coords, patch_size_level0, cell_size=50) -> (canvas, rows, cols)
    slide_canvas_per_patch(slide, coords, patch_size_level0, cell_size=50) -> (canvas, rows, cols)
    overlay_on_thumbnail(slide_or_thumbnail, coords, values, patch_size_level0, ...) -> RGB image
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from helpers.labels import _open_slide
from helpers.trident import to_rgb

__all__ = [
    "patch_grid_indices",
    "slide_canvas",
    "slide_canvas_per_patch",
    "overlay_on_thumbnail",
]

#: Level pixels held in memory at once while building a canvas (about 128 MB of RGBA).
_BAND_PIXELS = 32 * 1024 * 1024


def _check(coords: np.ndarray, patch_size_level0: int, cell_size: int | None = None) -> np.ndarray:
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords must have shape (N, 2), got {coords.shape}.")
    if int(patch_size_level0) <= 0:
        raise ValueError(f"patch_size_level0 must be positive, got {patch_size_level0}.")
    if cell_size is not None and int(cell_size) <= 0:
        raise ValueError(f"cell_size must be positive, got {cell_size}.")
    return coords.astype(np.int64, copy=False)


def patch_grid_indices(coords: np.ndarray, patch_size_level0: int) -> tuple[np.ndarray, np.ndarray]:
    """Canvas row and column of every patch: ``y // P`` and ``x // P``, shifted to start at 0.

    This is the convention of the earlier tutorial and of ``torchmil.visualize``.

    Arguments:
        coords: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners.
        patch_size_level0: Patch side ``P`` in level-0 pixels.

    Returns:
        ``(rows, cols)``: two ``(N,)`` int64 arrays.
    """
    coords = _check(coords, patch_size_level0)
    if len(coords) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows = coords[:, 1] // int(patch_size_level0)
    cols = coords[:, 0] // int(patch_size_level0)
    return rows - rows.min(), cols - cols.min()


def _choose_level(downsamples, target: float) -> int:
    """The coarsest level whose downsample is at most ``target`` (only shrink, never enlarge)."""
    best = 0
    for level, ds in enumerate(downsamples):
        if ds <= target * 1.001:
            best = level
    return best


def _rgb(region) -> np.ndarray:
    """openslide RGBA -> RGB; beyond the slide's edge (transparent) is white, like glass."""
    return to_rgb(np.asarray(region))


class _TiffLevel:
    """Decode only the tiles of one tiled RGB TIFF page that a window touches.

    openslide composes every region through cairo, which costs more than decoding the JPEG
    tiles; for TIFF-based slides (Aperio, generic tiled TIFF, the demo cohort) reading the tiles
    with tifffile is several times faster. Used only when a page has exactly the size of the
    openslide level and a probe read agrees with openslide; otherwise openslide reads.
    """

    def __init__(self, tif, page) -> None:
        self.tif, self.page = tif, page
        self.height, self.width = page.shape[:2]
        self.th, self.tw = page.tilelength, page.tilewidth
        self.across = -(-self.width // self.tw)

    @classmethod
    def open(cls, slide, level: int) -> _TiffLevel | None:
        import tifffile

        path = getattr(slide, "_filename", None)
        if path is None or not str(path).lower().endswith((".tif", ".tiff", ".svs")):
            return None
        w, h = slide.level_dimensions[level]
        try:
            tif = tifffile.TiffFile(path)
        except Exception:  # not a TIFF tifffile understands: openslide reads
            return None
        try:
            for page in tif.pages:
                if (
                    page.is_tiled
                    and page.shape[:2] == (h, w)
                    and page.samplesperpixel == 3
                    and page.dtype == np.uint8
                    and page.planarconfig == 1
                    and page.imagedepth == 1
                ):
                    reader = cls(tif, page)
                    if reader._agrees_with(slide, level):
                        return reader
                    break
        except Exception:
            pass
        tif.close()
        return None

    def _agrees_with(self, slide, level: int) -> bool:
        ds = slide.level_downsamples[level]
        x, y = max(self.width // 2 - 32, 0), max(self.height // 2 - 32, 0)
        ours = self.read(x, y, 64, 64)
        ref = _rgb(slide.read_region((int(round(x * ds)), int(round(y * ds))), level, (64, 64)))
        return ours.shape == ref.shape and np.abs(ours.astype(int) - ref).mean() < 2

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB ``(h, w, 3)`` of the window at level pixel ``(x, y)``; white beyond the page."""
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x0 or y1 <= y0:
            return out
        page = self.page
        idx = [
            ty * self.across + tx
            for ty in range(y0 // self.th, (y1 - 1) // self.th + 1)
            for tx in range(x0 // self.tw, (x1 - 1) // self.tw + 1)
        ]
        segments = self.tif.filehandle.read_segments(
            [page.dataoffsets[i] for i in idx], [page.databytecounts[i] for i in idx], indices=idx
        )
        for data, i in segments:
            tile = page.decode(data, i, jpegtables=page.jpegtables)[0][0]
            ty, tx = (i // self.across) * self.th, (i % self.across) * self.tw
            # overlap of the tile [ty, ty+th) x [tx, tx+tw) with the window, clipped to the page
            sy0, sy1 = max(ty, y0), min(ty + self.th, y1)
            sx0, sx1 = max(tx, x0), min(tx + self.tw, x1)
            out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx, :3
            ]
        return out

    def close(self) -> None:
        self.tif.close()


def slide_canvas(
    slide,
    coords: np.ndarray,
    patch_size_level0: int,
    cell_size: int = 50,
    level: int | None = None,
    oversample: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``torchmil.visualize`` canvas of a slide, from one low-resolution read.

    Same result as reading every patch at level 0, resizing it to ``cell_size`` and calling
    ``torchmil.visualize.patches_to_canvas`` (see :func:`slide_canvas_per_patch`), up to
    resampling: cell ``(rows[i], cols[i])`` shows patch ``i``, cells without a patch are white.
    The pyramid level read is the coarsest on which a patch still spans ``oversample *
    cell_size`` pixels (level 3, 128 px, for 1024 px patches in 50 px cells); it is read in
    bands of rows, resized with ``cv2.resize``'s default (bilinear, like the per-patch way) so
    that a patch is exactly ``cell_size`` pixels, and cut into cells.

    Arguments:
        slide: An ``openslide.OpenSlide`` or the path of a slide.
        coords: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners of the patches.
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
    coords = _check(coords, patch_size_level0, cell_size)
    p, cs = int(patch_size_level0), int(cell_size)
    rows, cols = patch_grid_indices(coords, p)
    if len(coords) == 0:  # what patches_to_canvas returns for an empty bag
        return np.full((cs, cs, 3), 255, dtype=np.uint8), rows, cols
    slide, opened = _open_slide(slide, "slide")
    tiff = None
    try:
        if level is None:
            level = _choose_level(slide.level_downsamples, p / (cs * max(oversample, 1.0)))
        if not 0 <= level < slide.level_count:
            raise ValueError(f"level {level} not in the slide (it has {slide.level_count}).")
        ds = float(slide.level_downsamples[level])
        tiff = _TiffLevel.open(slide, level)

        def read(loc0: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
            if tiff is not None:
                return tiff.read(int(round(loc0[0] / ds)), int(round(loc0[1] / ds)), *size)
            return _rgb(slide.read_region(loc0, level, size))

        n_rows, n_cols = int(rows.max()) + 1, int(cols.max()) + 1
        canvas = np.full((n_rows * cs, n_cols * cs, 3), 255, dtype=np.uint8)
        r_min = int(coords[:, 1].min()) // p
        c_min = int(coords[:, 0].min()) // p
        on_grid = bool(np.all(coords % p == 0))
        cell_px = p / ds  # a patch's side on the level
        occupied = np.zeros((n_rows, n_cols), dtype=bool)
        occupied[rows, cols] = True
        band = max(1, int(_BAND_PIXELS // max(n_cols * cell_px * cell_px, 1)))
        for r0 in range(0, n_rows, band):
            r1 = min(r0 + band, n_rows)
            used = np.flatnonzero(occupied[r0:r1].any(axis=0))
            if len(used) == 0:
                continue
            c0, c1 = int(used[0]), int(used[-1]) + 1  # only the columns this band needs
            extra = 0 if on_grid else 1  # patches off the grid reach into the next cell
            loc = ((c_min + c0) * p, (r_min + r0) * p)  # level-0 top-left of the band
            size = (
                int(math.ceil((c1 - c0 + extra) * cell_px)),
                int(math.ceil((r1 - r0 + extra) * cell_px)),
            )
            region = read(loc, size)
            if on_grid:
                # resize the band so that a patch is exactly cs x cs, then keep occupied cells
                exact = (int(round((c1 - c0) * cell_px)), int(round((r1 - r0) * cell_px)))
                small = cv2.resize(region[: exact[1], : exact[0]], ((c1 - c0) * cs, (r1 - r0) * cs))
                keep = np.repeat(np.repeat(occupied[r0:r1, c0:c1], cs, axis=0), cs, axis=1)
                target = canvas[r0 * cs : r1 * cs, c0 * cs : c1 * cs]
                target[keep] = small[keep]
            else:
                # patches off the P grid (overlap): cut each patch out of the band
                for i in np.flatnonzero((rows >= r0) & (rows < r1)):
                    x = (coords[i, 0] - loc[0]) / ds
                    y = (coords[i, 1] - loc[1]) / ds
                    x0, y0 = int(round(x)), int(round(y))
                    x1, y1 = int(round(x + cell_px)), int(round(y + cell_px))
                    patch = np.zeros((y1 - y0, x1 - x0, 3), dtype=np.uint8)
                    src = region[max(y0, 0) : y1, max(x0, 0) : x1]
                    patch[: src.shape[0], : src.shape[1]] = src
                    r, c = rows[i], cols[i]
                    canvas[r * cs : (r + 1) * cs, c * cs : (c + 1) * cs] = cv2.resize(
                        patch, (cs, cs)
                    )
        return canvas, rows, cols
    finally:
        if tiff is not None:
            tiff.close()
        if opened:
            slide.close()


def slide_canvas_per_patch(
    slide,
    coords: np.ndarray,
    patch_size_level0: int,
    cell_size: int = 50,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slow reference: read every patch at level 0, shrink it, place it on the canvas.

    This is how the earlier tutorial built its canvas; the tests and the benchmark compare
    :func:`slide_canvas` with it. Same arguments and returns as :func:`slide_canvas`.
    """
    from torchmil.visualize import patches_to_canvas

    coords = _check(coords, patch_size_level0, cell_size)
    p, cs = int(patch_size_level0), int(cell_size)
    slide, opened = _open_slide(slide, "slide")
    try:
        patches = []
        for x, y in tqdm(coords, desc="reading patches", disable=not progress):
            patch = _rgb(slide.read_region((int(x), int(y)), 0, (p, p)))
            patches.append(cv2.resize(patch, (cs, cs)))
    finally:
        if opened:
            slide.close()
    rows, cols = patch_grid_indices(coords, p)
    return patches_to_canvas(patches, rows, cols, cs), rows, cols


def overlay_on_thumbnail(
    slide_or_thumbnail,
    coords: np.ndarray,
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
        coords: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners of the patches.
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
    import matplotlib

    coords = _check(coords, patch_size_level0)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) != len(coords):
        raise ValueError(f"{len(values)} values for {len(coords)} patches.")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
    if vmax <= vmin:
        raise ValueError(f"vmax ({vmax}) must be greater than vmin ({vmin}).")
    if isinstance(slide_or_thumbnail, np.ndarray):
        thumb = slide_or_thumbnail
        if thumb.ndim != 3 or thumb.shape[2] < 3:
            raise ValueError(f"thumbnail must be RGB (h, w, 3), got {thumb.shape}.")
        thumb = np.ascontiguousarray(thumb[..., :3]).astype(np.uint8)
        if level0_size is None:
            raise ValueError("level0_size=(width, height) is needed with a thumbnail array.")
    else:
        slide, opened = _open_slide(slide_or_thumbnail, "slide")
        try:
            level0_size = level0_size or slide.dimensions
            thumb = np.asarray(slide.get_thumbnail((max_size, max_size)).convert("RGB"))
        finally:
            if opened:
                slide.close()
    h, w = thumb.shape[:2]
    sx, sy = w / float(level0_size[0]), h / float(level0_size[1])
    p = int(patch_size_level0)
    # patch edges on the thumbnail, rounded so that neighbouring patches share an edge
    x0 = np.clip(np.rint(coords[:, 0] * sx).astype(int), 0, w)
    x1 = np.clip(np.rint((coords[:, 0] + p) * sx).astype(int), 0, w)
    y0 = np.clip(np.rint(coords[:, 1] * sy).astype(int), 0, h)
    y1 = np.clip(np.rint((coords[:, 1] + p) * sy).astype(int), 0, h)
    value_map = np.full((h, w), np.nan)
    for i in np.flatnonzero(np.isfinite(values)):
        value_map[y0[i] : max(y1[i], y0[i] + 1), x0[i] : max(x1[i], x0[i] + 1)] = values[i]
    painted = np.isfinite(value_map)
    colors = matplotlib.colormaps[cmap](np.clip((value_map - vmin) / (vmax - vmin), 0, 1))
    out = thumb.astype(np.float64)
    out[painted] = (1 - alpha) * out[painted] + alpha * 255.0 * colors[painted][:, :3]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)
