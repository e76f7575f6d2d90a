"""Deep Zoom pyramids of a slide and of per-patch values, holding only the tiles with tissue.

A Deep Zoom image (``.dzi``) is a descriptor plus a folder of tiles, one sub-folder per level:
level ``max_level`` is the image at full size (the slide's level 0), each level below halves
it, down to one pixel. :func:`write_slide_pyramid` cuts the slide with openslide's
``DeepZoomGenerator`` (JPEG tiles); :func:`write_value_pyramid` paints one value per patch
(attention, labels) into a transparent RGBA image, a few pixels per patch-grid cell, and cuts
it the same way (PNG tiles). Both place every pixel in the slide's level-0 frame: pixel
``(u, v)`` of a value pyramid is level-0 ``(u, v) * level0_per_px``.

Only the tiles that hold tissue are written: the tissue is TRIDENT's, the patches of its
coords file, merged row by row into rectangles (:func:`tissue_rects_level0`). The descriptor
lists these rectangles as ``<DisplayRect>`` elements, the Deep Zoom way of saying where an
image has content; OpenSeadragon requests a tile only when it meets one of them
(``DziTileSource.tileExists``), and :func:`tiles_to_write` applies the same test, so the
viewer never asks for a tile that is not on disk. A DisplayRect also names the levels it
holds: a slide too large for ``max_tiles`` keeps its finest levels only around the evidence
(:func:`detail_rects`); elsewhere the viewer enlarges the finest level written.

Public API::

    tissue_rects_level0(coords_level0, patch_size_level0) -> (R, 4) int64 x, y, w, h
    tiles_to_write(level_dims, tile_size, rects) -> list of (level, col, row)
    with_levels(rects, min_level, max_level) -> (R, 6) DisplayRects with their levels
    detail_rects(level_dims, tile_size, rects_level0, detail_level0, max_tiles) -> (rects, n)
    write_slide_pyramid(slide_path, out, rects_level0, ..., detail_level0, max_tiles) -> Pyramid
    write_value_pyramid(values, coords_level0, patch_size_level0, level0_size, out, ...)
        -> Pyramid
"""

from __future__ import annotations

import math
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import openslide
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from helpers.grid import check_coords_level0

__all__ = [
    "Pyramid",
    "tissue_rects_level0",
    "tiles_to_write",
    "with_levels",
    "detail_rects",
    "dzi_xml",
    "write_slide_pyramid",
    "write_value_pyramid",
    "value_image",
]

#: Deep Zoom tiles of 510 px plus a 1 px overlap on each side (512 px files): a quarter of
#: the files of OpenSeadragon's default 254 px, for the same pixels.
TILE_SIZE, OVERLAP = 510, 1
#: JPEG quality of the slide's tiles (70: 8% smaller than 75, no visible difference at 1:1).
JPEG_QUALITY = 70
DZI_NS = "http://schemas.microsoft.com/deepzoom/2008"


@dataclass
class Pyramid:
    """A written Deep Zoom image: where it is, its geometry and what it cost."""

    dzi: Path  # the descriptor, <name>.dzi; tiles in <name>_files/<level>/<col>_<row>.<fmt>
    width: int  # full-size pixels (level-0 pixels for a slide)
    height: int
    tile_size: int
    overlap: int
    fmt: str  # "jpeg" or "png"
    level0_per_px: float  # level-0 pixels per full-size pixel (1 for a slide)
    rects: np.ndarray  # (R, 6) int64 DisplayRects x, y, w, h (full-size px), min, max level
    n_tiles: int  # tiles written
    n_tiles_all: int  # tiles of the whole pyramid, tissue or not
    nbytes: int  # bytes written (descriptor and tiles)
    levels: int = field(default=0)
    #: finest levels written only inside the detail rectangles (0: everywhere there is tissue)
    detail_levels: int = field(default=0)

    @property
    def tiles_dir(self) -> Path:
        return self.dzi.with_name(self.dzi.stem + "_files")

    def image_json(self, url: str) -> dict:
        """The descriptor as OpenSeadragon's inline tile source (``{"Image": ...}``): the
        viewer page embeds it, since a browser reading ``file://`` may not fetch the XML."""
        return {
            "Image": {
                "xmlns": DZI_NS,
                "Url": url,
                "Format": self.fmt,
                "Overlap": str(self.overlap),
                "TileSize": str(self.tile_size),
                "Size": {"Width": str(self.width), "Height": str(self.height)},
                "DisplayRect": [_display_rect(r) for r in self.rects],
            }
        }


def _display_rect(rect: np.ndarray) -> dict:
    x, y, w, h, low, high = (str(int(v)) for v in rect)
    return {"Rect": {"X": x, "Y": y, "Width": w, "Height": h, "MinLevel": low, "MaxLevel": high}}


def with_levels(rects, min_level: int, max_level: int) -> np.ndarray:
    """``(R, 4)`` rectangles as ``(R, 6)`` DisplayRects shown from ``min_level`` to
    ``max_level``; ``(R, 6)`` ones are returned as they are."""
    rects = np.asarray(rects, np.int64)
    if rects.size and rects.shape[1] == 6:
        return rects
    rects = rects.reshape(-1, 4)
    levels = np.broadcast_to([min_level, max_level], (len(rects), 2))
    return np.concatenate([rects, levels], axis=1).astype(np.int64)


def tissue_rects_level0(coords_level0, patch_size_level0: int) -> np.ndarray:
    """The tissue as rectangles: the patches of each row merged into runs.

    Arguments:
        coords_level0: ``(N, 2)`` int ``(x, y)`` top-left corners of TRIDENT's patches.
        patch_size_level0: Patch side in level-0 pixels.

    Returns:
        ``(R, 4)`` int64 ``(x, y, width, height)`` in level-0 pixels, one per run of patches
        that touch side by side in a row (same ``y``, ``x`` one patch apart).
    """
    coords_level0 = check_coords_level0(coords_level0, patch_size_level0)
    ps = int(patch_size_level0)
    if len(coords_level0) == 0:
        return np.zeros((0, 4), np.int64)
    order = np.lexsort((coords_level0[:, 0], coords_level0[:, 1]))  # by y, then x
    xy = coords_level0[order]
    # a run starts where the row changes or the next patch is not adjacent
    new_run = np.ones(len(xy), bool)
    new_run[1:] = (xy[1:, 1] != xy[:-1, 1]) | (xy[1:, 0] != xy[:-1, 0] + ps)
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:], len(xy)] - 1
    widths = xy[ends, 0] + ps - xy[starts, 0]
    return np.column_stack([xy[starts, 0], xy[starts, 1], widths, np.full(len(starts), ps)])


def tiles_to_write(
    level_dims: list[tuple[int, int]], tile_size: int, rects: np.ndarray
) -> list[tuple[int, int, int]]:
    """The tiles OpenSeadragon requests: those that meet a DisplayRect.

    The same arithmetic as OpenSeadragon's ``DziTileSource.tileExists`` (v6.1.1): at level
    ``l`` a rectangle scales by ``2 ** (l - max_level)`` and covers the tiles from
    ``floor(x * s / tile_size)`` to ``ceil((x * s + w * s) / tile_size)`` (exclusive), on
    the levels from its ``MinLevel`` to its ``MaxLevel``.

    Arguments:
        level_dims: ``(width, height)`` of each Deep Zoom level, smallest first.
        tile_size: Tile side without the overlap.
        rects: ``(R, 4)`` ``(x, y, width, height)`` in full-size pixels (every level), or
            ``(R, 6)`` with each rectangle's min and max level.

    Returns:
        ``(level, col, row)`` of each tile to write, level by level.
    """
    max_level = len(level_dims) - 1
    rects = with_levels(rects, 0, max_level)
    tiles = []
    for level, (width, height) in enumerate(level_dims):
        cols, rows = math.ceil(width / tile_size), math.ceil(height / tile_size)
        hit = np.zeros((rows, cols), bool)
        scale = 1 / 2 ** (max_level - level)  # OpenSeadragon's getLevelScale
        on_level = (rects[:, 4] <= level) & (level <= rects[:, 5])
        for x, y, w, h in rects[on_level, :4].tolist():
            x0, y0 = x * scale, y * scale
            x1, y1 = x0 + w * scale, y0 + h * scale
            c0, r0 = math.floor(x0 / tile_size), math.floor(y0 / tile_size)
            c1, r1 = math.ceil(x1 / tile_size), math.ceil(y1 / tile_size)
            hit[max(r0, 0) : min(r1, rows), max(c0, 0) : min(c1, cols)] = True
        tiles += [(level, int(c), int(r)) for r, c in zip(*np.nonzero(hit), strict=True)]
    return tiles


def dzi_xml(width: int, height: int, tile_size: int, overlap: int, fmt: str, rects) -> str:
    """The ``.dzi`` descriptor, with the tissue rectangles as ``<DisplayRect>`` elements
    (``rects`` ``(R, 4)``: on every level; ``(R, 6)``: with their min and max level)."""
    max_level = max(math.ceil(math.log2(max(width, height, 1))), 0)
    display = "".join(
        f'<DisplayRect MinLevel="{low}" MaxLevel="{high}">'
        f'<Rect X="{x}" Y="{y}" Width="{w}" Height="{h}"/></DisplayRect>'
        for x, y, w, h, low, high in with_levels(rects, 0, max_level).tolist()
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<Image xmlns="{DZI_NS}" Format="{fmt}" Overlap="{overlap}" TileSize="{tile_size}">'
        f'<Size Width="{width}" Height="{height}"/>'
        + (f"<DisplayRects>{display}</DisplayRects>" if display else "")
        + "</Image>\n"
    )


def _write(
    dz: DeepZoomGenerator,
    out: Path,
    rects: np.ndarray,
    fmt: str,
    tile_image,
    level0_per_px: float,
    save_kwargs: dict,
    tile_size: int,
    overlap: int,
    detail_levels: int = 0,
) -> Pyramid:
    """Write the descriptor ``out`` (``<name>.dzi``) and the tiles that meet ``rects``."""
    out = Path(out)
    tiles_dir = out.with_name(out.stem + "_files")
    if tiles_dir.exists():
        shutil.rmtree(tiles_dir)
    width, height = dz.level_dimensions[-1]
    ext = "jpeg" if fmt == "jpeg" else fmt
    todo = tiles_to_write(list(dz.level_dimensions), tile_size, rects)
    for level in sorted({t[0] for t in todo}):
        (tiles_dir / str(level)).mkdir(parents=True, exist_ok=True)

    def write_one(tile: tuple[int, int, int]) -> int:
        level, col, row = tile
        path = tiles_dir / str(level) / f"{col}_{row}.{ext}"
        tile_image(level, (col, row)).save(path, **save_kwargs)
        return path.stat().st_size

    # openslide's reads and Pillow's encoders release the GIL: threads use every core
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        nbytes = sum(pool.map(write_one, todo))
    out.write_text(dzi_xml(width, height, tile_size, overlap, ext, rects))
    return Pyramid(
        dzi=out,
        width=width,
        height=height,
        tile_size=tile_size,
        overlap=overlap,
        fmt=ext,
        level0_per_px=level0_per_px,
        rects=with_levels(rects, 0, dz.level_count - 1),
        n_tiles=len(todo),
        n_tiles_all=int(sum(c * r for c, r in dz.level_tiles)),
        nbytes=nbytes + out.stat().st_size,
        levels=dz.level_count,
        detail_levels=detail_levels,
    )


def detail_rects(
    level_dims: list[tuple[int, int]],
    tile_size: int,
    rects_level0: np.ndarray,
    detail_level0: np.ndarray | None,
    max_tiles: int | None,
    max_dropped: int | None = None,
) -> tuple[np.ndarray, int]:
    """DisplayRects that keep a pyramid within ``max_tiles`` tiles.

    The tissue on every level when that fits; else the tissue up to a coarser level and
    the finest levels only inside ``detail_level0`` (the evidence: the top patches, the
    lesions), dropping as few levels from the tissue as it takes, and at most
    ``max_dropped`` (then the pyramid may hold more than ``max_tiles`` tiles: the evidence
    alone needs them).

    Returns:
        ``(rects (R, 6), detail_levels)``: the rectangles with their levels, and how many
        of the finest levels are written inside ``detail_level0`` only.
    """
    max_level = len(level_dims) - 1
    detail = np.zeros((0, 4), np.int64) if detail_level0 is None else detail_level0
    most = max_level if max_dropped is None else min(max_dropped, max_level)
    for dropped in range(most + 1):
        rects = np.concatenate([
            with_levels(rects_level0, 0, max_level - dropped),
            with_levels(detail, max_level - dropped + 1, max_level) if dropped else
            np.zeros((0, 6), np.int64),
        ])  # fmt: skip
        if max_tiles is None or len(tiles_to_write(level_dims, tile_size, rects)) <= max_tiles:
            return rects, dropped
    return rects, most


def write_slide_pyramid(
    slide_path,
    out,
    rects_level0: np.ndarray,
    tile_size: int = TILE_SIZE,
    overlap: int = OVERLAP,
    quality: int = JPEG_QUALITY,
    detail_level0: np.ndarray | None = None,
    max_tiles: int | None = None,
    max_dropped: int | None = None,
) -> Pyramid:
    """A slide's Deep Zoom pyramid (JPEG tiles), only the tiles that meet the tissue.

    Arguments:
        slide_path: Any slide openslide opens.
        out: The descriptor's path, ``<folder>/<name>.dzi``; tiles go to ``<name>_files/``
            (replaced when it exists).
        rects_level0: ``(R, 4)`` tissue rectangles ``(x, y, w, h)`` in level-0 pixels
            (:func:`tissue_rects_level0`).
        tile_size, overlap: Deep Zoom tile side and overlap, in pixels.
        quality: JPEG quality of the tiles.
        detail_level0: ``(D, 4)`` level-0 rectangles always written down to level 0.
        max_tiles: When the tissue on every level needs more tiles, the finest levels are
            written inside ``detail_level0`` only (:func:`detail_rects`); None: no limit.
        max_dropped: The most levels written inside ``detail_level0`` only.

    Returns:
        The :class:`Pyramid` written; its full size is the slide's level 0.
    """
    with openslide.OpenSlide(str(slide_path)) as slide:
        # limit_bounds=False: the pyramid's full size is level 0 itself, so the Deep Zoom
        # frame and the level-0 frame are one (no offset from a bounds property)
        dz = DeepZoomGenerator(slide, tile_size=tile_size, overlap=overlap, limit_bounds=False)
        rects, dropped = detail_rects(
            list(dz.level_dimensions), tile_size, rects_level0, detail_level0, max_tiles,
            max_dropped,
        )  # fmt: skip
        return _write(
            dz, Path(out), rects, "jpeg", dz.get_tile, 1.0, {"quality": quality},
            tile_size, overlap, dropped,
        )  # fmt: skip


def value_image(
    values,
    coords_level0,
    patch_size_level0: int,
    level0_size: tuple[int, int],
    level0_per_px: float,
    cmap: str = "RdYlGn_r",
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> np.ndarray:
    """Per-patch values painted as an RGBA image in the slide's frame, transparent elsewhere.

    Pixel ``(u, v)`` covers level-0 ``[u, u + 1) * level0_per_px`` (and the same in ``y``);
    each patch's box ``[x, x + patch_size_level0)`` becomes pixels ``round(x /
    level0_per_px)`` to ``round((x + patch_size_level0) / level0_per_px)``. NaN values stay
    transparent.

    Returns:
        ``(ceil(height / level0_per_px), ceil(width / level0_per_px), 4)`` uint8.
    """
    import matplotlib

    coords_level0 = check_coords_level0(coords_level0, patch_size_level0)
    values = np.asarray(values, np.float64).reshape(-1)
    if len(values) != len(coords_level0):
        raise ValueError(f"{len(values)} values for {len(coords_level0)} patches.")
    w = math.ceil(level0_size[0] / level0_per_px)
    h = math.ceil(level0_size[1] / level0_per_px)
    image = np.zeros((h, w, 4), np.uint8)
    colours = matplotlib.colormaps[cmap](np.clip((values - vmin) / (vmax - vmin), 0, 1))
    colours = np.rint(colours * 255).astype(np.uint8)
    edges = np.rint(
        np.concatenate([coords_level0, coords_level0 + patch_size_level0], 1) / level0_per_px
    ).astype(np.int64)
    for i in np.flatnonzero(np.isfinite(values)):
        x0, y0, x1, y1 = edges[i]
        image[max(y0, 0) : min(y1, h), max(x0, 0) : min(x1, w)] = colours[i]
    return image


def write_value_pyramid(
    values,
    coords_level0,
    patch_size_level0: int,
    level0_size: tuple[int, int],
    out,
    cell_px: int = 16,
    cmap: str = "RdYlGn_r",
    tile_size: int = TILE_SIZE,
    overlap: int = OVERLAP,
) -> Pyramid:
    """Per-patch values as a transparent Deep Zoom layer over the slide (PNG tiles).

    The layer is drawn at ``cell_px`` pixels per patch (``level0_per_px = patch_size_level0
    / cell_px`` level-0 pixels per pixel): the values are constant over a patch, so a finer
    layer would only repeat them. A viewer places it over the slide scaled by
    ``level0_per_px``; its tiles are written where the patches are.

    Arguments:
        values: ``(N,)`` values in ``[0, 1]`` (min-max scaled attention), NaN: transparent.
        coords_level0: ``(N, 2)`` int level-0 ``(x, y)`` corners of the patches.
        patch_size_level0: Patch side in level-0 pixels.
        level0_size: The slide's ``(width, height)`` at level 0.
        out: The descriptor's path, ``<folder>/<name>.dzi``.
        cell_px: Layer pixels per patch side.
        cmap: matplotlib colormap; 0 maps to its low end, 1 to its high end.

    Returns:
        The :class:`Pyramid` written (``level0_per_px`` says how to scale it).
    """
    level0_per_px = float(patch_size_level0) / cell_px
    image = value_image(values, coords_level0, patch_size_level0, level0_size, level0_per_px, cmap)
    rects = tissue_rects_level0(coords_level0, patch_size_level0).astype(np.float64)
    rects_px = np.rint(rects / level0_per_px).astype(np.int64)
    layer = openslide.ImageSlide(Image.fromarray(image, "RGBA"))
    dz = DeepZoomGenerator(layer, tile_size=tile_size, overlap=overlap, limit_bounds=False)

    def rgba_tile(level: int, address: tuple[int, int]) -> Image.Image:
        # DeepZoomGenerator.get_tile lays tiles on an opaque background; keep the alpha
        location, slide_level, size = dz.get_tile_coordinates(level, address)
        tile = layer.read_region(location, slide_level, size)
        target = dz.get_tile_dimensions(level, address)
        return tile if tile.size == target else tile.resize(target, Image.Resampling.BOX)

    try:
        return _write(
            dz,
            Path(out),
            rects_px,
            "png",
            rgba_tile,
            level0_per_px,
            {"optimize": True},
            tile_size,
            overlap,
        )
    finally:
        layer.close()
