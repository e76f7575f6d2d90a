"""Reading a whole-slide image: open it, its thumbnail, a level as RGB, the level for a
resolution, its microns per pixel and magnification (as TRIDENT infers them), and the tiles
of a TIFF level decoded without openslide (:class:`TiffLevelReader`).

Public API::

    open_slide(path_or_slide, what="slide") -> (openslide.OpenSlide, opened_here)
    read_thumbnail(path_or_slide, max_size=1000) -> (h, w, 3) uint8
    read_level(slide, level) -> (h, w, 3) uint8
    to_rgb(rgba) -> RGB over white
    choose_level(level_downsamples, patch_size_level0, min_patch_px, rtol=1e-3) -> int
    best_level(slide, downsample, tolerance=0.1) -> int     (TRIDENT's choice)
    slide_mpp(slide) -> float; level0_magnification(slide) -> int; objective_power(slide) -> int
    TiffLevelReader.open(path, slide, level) -> reader of one tiled TIFF level, or None
    LevelTiles(slide, level, path) -> a level read band by band (the canvases)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import openslide

from helpers.formats import LabelInputError

#: Threads that decode tiles (the codecs release the GIL).
_DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))
#: What tifffile and its codecs raise for a file, a page layout or a tile they cannot read
#: (``TiffFileError`` is a ``ValueError``, imagecodecs' errors are ``RuntimeError``, a codec
#: that is not installed an ``ImportError``): openslide then reads instead.
_TIFF_FAILURES = (OSError, ValueError, KeyError, RuntimeError, ImportError)


def open_slide(path_or_slide, what: str = "slide"):
    """``(slide, opened_here)``: an ``openslide.OpenSlide`` for a path, or the object itself.

    A missing file raises ``FileNotFoundError`` and an unreadable one :class:`LabelInputError`,
    both naming ``what`` (``"slide"``, ``"mask"``). ``opened_here`` tells the caller whether
    it must close the slide (it did not own an object it was given)::

        slide, opened = open_slide(path)
        try:
            ...
        finally:
            if opened:
                slide.close()
    """
    import openslide

    if isinstance(path_or_slide, openslide.AbstractSlide):
        return path_or_slide, False
    path = Path(path_or_slide)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return openslide.OpenSlide(str(path)), True
    except (openslide.OpenSlideError, OSError) as exc:
        raise LabelInputError(f"cannot read {what} {path}: {exc}") from exc


def read_thumbnail(path_or_slide, max_size: int = 1000) -> np.ndarray:
    """The slide's thumbnail (openslide's, longest side ``max_size``): uint8 RGB ``(h, w, 3)``."""
    slide, opened = open_slide(path_or_slide, "slide")
    try:
        return np.asarray(slide.get_thumbnail((max_size, max_size)).convert("RGB"))
    finally:
        if opened:
            slide.close()


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


def slide_mpp(slide: openslide.OpenSlide) -> float:
    """Level-0 microns per pixel, looked up as TRIDENT does (rounded to 4 decimals).

    Raises ``ValueError`` when the slide carries none (TRIDENT then needs the mpp given).
    """
    props = slide.properties
    for key in (
        openslide.PROPERTY_NAME_MPP_X,
        "openslide.mirax.MPP",
        "aperio.MPP",
        "hamamatsu.XResolution",
        "openslide.comment",
    ):
        try:
            return round(float(props[key]), 4)
        except (KeyError, ValueError):
            continue
    res, unit = props.get("tiff.XResolution"), props.get("tiff.ResolutionUnit", "")
    per_unit = {"centimeter": 10000.0, "inch": 25400.0}.get(unit.lower())
    if res and per_unit:
        return round(per_unit / float(res), 4)
    raise ValueError("The slide has no mpp (microns per pixel) in its metadata.")


def level0_magnification(slide: openslide.OpenSlide) -> int:
    """Level-0 magnification as TRIDENT infers it: from the mpp when there is one
    (< 0.16: 80, < 0.2: 60, < 0.3: 40, < 0.6: 20, < 1.2: 10, < 2.4: 5), else the objective
    power. CAMELYON16's slides (0.243 and 0.226 mpp, no objective power) give 40."""
    try:
        mpp = slide_mpp(slide)
    except ValueError:
        power = slide.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
        if power:
            return int(float(power))
        raise ValueError(
            "The slide has neither mpp nor objective power; cannot infer its magnification."
        ) from None
    for bound, mag in ((0.16, 80), (0.2, 60), (0.3, 40), (0.6, 20), (1.2, 10), (2.4, 5)):
        if mpp < bound:
            return mag
    raise ValueError(f"mpp {mpp} is too coarse for a whole-slide image.")


def best_level(slide: openslide.OpenSlide, downsample: float, tolerance: float = 0.1) -> int:
    """TRIDENT's choice of level for a downsample: one within ``tolerance`` of it, else the
    coarsest level finer than it (the region read there is then resized)."""
    downsamples = slide.level_downsamples
    for level, level_downsample in enumerate(downsamples):
        if abs(level_downsample - downsample) <= tolerance:
            return level
    finer = [level for level, d in enumerate(downsamples) if d <= downsample]
    return finer[-1] if finer else 0


#: Relative slack in :func:`choose_level`: file downsamples are often a hair off the nominal
#: value (4.0003 for 4), and a level that misses the bar by that rounding still counts.
LEVEL_RTOL = 1e-3


def choose_level(
    level_downsamples: Sequence[float],
    patch_size_level0: float,
    min_patch_px: float,
    rtol: float = LEVEL_RTOL,
) -> int:
    """The coarsest pyramid level on which a patch still spans ``min_patch_px`` pixels.

    That is the largest ``level`` with ``level_downsamples[level] <= patch_size_level0 /
    min_patch_px * (1 + rtol)``; level 0 when none qualifies. Levels are only ever shrunk from,
    never enlarged. Used for the canvases (``oversample * cell_size`` level pixels per cell, a
    picture: the default :data:`LEVEL_RTOL` lets a level a hair short of the bar count) and
    for the label maps (``min_patch_px`` mask pixels per patch, a resolution the fractions
    need: pass a small ``rtol`` such as ``1e-6``).
    """
    if rtol < 0:
        raise ValueError(f"rtol must be >= 0, got {rtol}.")
    max_downsample = patch_size_level0 / min_patch_px * (1 + rtol)
    best = 0
    for level, downsample in enumerate(level_downsamples):
        if downsample <= max_downsample:
            best = level
    return best


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

    def tile_origin(self, index: int) -> tuple[int, int]:
        """Level pixel ``(x, y)`` of the top-left corner of tile ``index`` (row-major)."""
        ty, tx = divmod(int(index), self.tiles_across)
        return tx * self.tile_width, ty * self.tile_height

    def decode_tiles(self, indices) -> Iterator[tuple[int, np.ndarray]]:
        """Decode the tiles ``indices`` (row-major: ``ty * tiles_across + tx``), each once, in
        the order they lie in the file.

        Yields:
            ``(index, tile)``: tile uint8 RGB ``(tile_height, tile_width, 3)`` (white for a
            tile the file leaves empty; the part past the page's edge is the file's padding).
        """
        idx = sorted({int(i) for i in indices})
        if not idx:
            return
        page = self.page
        segments = list(
            self.tif.filehandle.read_segments(
                [page.dataoffsets[i] for i in idx],
                [page.databytecounts[i] for i in idx],
                indices=idx,
                sort=True,
            )
        )

        def decode(segment: tuple[bytes | None, int]) -> tuple[int, np.ndarray]:
            data, i = segment
            if not data:
                return i, np.full((self.tile_height, self.tile_width, 3), 255, np.uint8)
            return i, page.decode(data, i, jpegtables=page.jpegtables)[0][0][..., :3]

        if len(segments) < 2 * _DECODE_THREADS or _DECODE_THREADS == 1:
            yield from map(decode, segments)
            return
        # the codecs release the GIL: decode on every core
        with ThreadPoolExecutor(_DECODE_THREADS) as pool:
            yield from pool.map(decode, segments)

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB ``(h, w, 3)`` of the window at level pixel ``(x, y)``; white beyond the page."""
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, self.width), min(y + h, self.height)
        if x1 <= x0 or y1 <= y0:
            return out
        tile_h, tile_w = self.tile_height, self.tile_width
        idx = [
            ty * self.tiles_across + tx
            for ty in range(y0 // tile_h, (y1 - 1) // tile_h + 1)
            for tx in range(x0 // tile_w, (x1 - 1) // tile_w + 1)
        ]
        for i, tile in self.decode_tiles(idx):
            paste_tile(out, (x, y), tile, self.tile_origin(i), (self.width, self.height))
        return out

    def close(self) -> None:
        self.tif.close()


def paste_tile(
    out: np.ndarray,
    out_xy: tuple[int, int],
    tile: np.ndarray,
    tile_xy: tuple[int, int],
    level_size: tuple[int, int],
) -> None:
    """Copy the part of ``tile`` that lies inside the level and inside ``out`` onto ``out``.

    ``out_xy`` and ``tile_xy`` are the level pixels of their top-left corners; ``level_size``
    is the level's ``(width, height)`` (a tile's padding past it is not copied)."""
    (x, y), (tx, ty) = out_xy, tile_xy
    h, w = out.shape[:2]
    x0, x1 = max(x, tx, 0), min(x + w, tx + tile.shape[1], level_size[0])
    y0, y1 = max(y, ty, 0), min(y + h, ty + tile.shape[0], level_size[1])
    if x1 > x0 and y1 > y0:
        out[y0 - y : y1 - y, x0 - x : x1 - x] = tile[y0 - ty : y1 - ty, x0 - tx : x1 - tx]


class LevelTiles:
    """One pyramid level, read for a canvas band by band. For a TIFF that tifffile reads
    (:class:`TiffLevelReader`), only the page's tiles under the patches are decoded, each
    once (a tile shared by two bands is kept for the second); otherwise openslide reads each
    band's window."""

    def __init__(self, slide, level: int, path: Path | None) -> None:
        self.slide, self.level = slide, level
        self.downsample = float(slide.level_downsamples[level])
        width, height = slide.level_dimensions[level]
        self.size = (int(width), int(height))
        self.tiff = TiffLevelReader.open(path, slide, level) if path is not None else None
        self.decoded: list[int] = []  # the TIFF tiles decoded, in order (each at most once)
        self._cache: dict[int, np.ndarray] = {}
        self._buffer = np.empty((0, 0, 3), dtype=np.uint8)

    def tiles_under(self, boxes: np.ndarray) -> np.ndarray:
        """Row-major indices of the TIFF tiles that any of ``boxes`` touches: ``(M, 4)`` int
        level pixels ``x0, y0, x1, y1`` (end exclusive), clipped to the level. Returns sorted
        ``(K,)`` int64 indices (none when openslide reads)."""
        if self.tiff is None:
            return np.zeros(0, np.int64)
        tile_w, tile_h = self.tiff.tile_width, self.tiff.tile_height
        width, height = self.size
        x0, x1 = np.clip(boxes[:, 0], 0, width), np.clip(boxes[:, 2], 0, width)
        y0, y1 = np.clip(boxes[:, 1], 0, height), np.clip(boxes[:, 3], 0, height)
        inside = (x1 > x0) & (y1 > y0)
        if not inside.any():
            return np.zeros(0, np.int64)
        tx0, tx1 = x0[inside] // tile_w, (x1[inside] - 1) // tile_w
        ty0, ty1 = y0[inside] // tile_h, (y1[inside] - 1) // tile_h
        found = []
        for dy in range(int((ty1 - ty0).max()) + 1):  # a box spans a few tiles at most
            for dx in range(int((tx1 - tx0).max()) + 1):
                sel = (ty0 + dy <= ty1) & (tx0 + dx <= tx1)
                found.append((ty0[sel] + dy) * self.tiff.tiles_across + tx0[sel] + dx)
        return np.unique(np.concatenate(found)).astype(np.int64)

    def region(
        self, origin_level0: tuple[int, int], size: tuple[int, int], tiles: np.ndarray
    ) -> np.ndarray:
        """RGB ``(height, width, 3)`` of the window of ``size`` ``(width, height)`` level
        pixels at ``origin_level0``: from a TIFF, the pixels of ``tiles`` (indices from
        :meth:`tiles_under`; each decoded on first use and kept until :meth:`forget_above`),
        white elsewhere and beyond the level (one buffer reused by every call: valid until
        the next); through openslide, the whole window."""
        if self.tiff is None:
            rgba = self.slide.read_region(origin_level0, self.level, size)
            return to_rgb(np.asarray(rgba))
        x, y = (int(round(v / self.downsample)) for v in origin_level0)
        missing = [int(i) for i in tiles if int(i) not in self._cache]
        self._cache.update(self.tiff.decode_tiles(missing))
        self.decoded.extend(missing)
        if self._buffer.shape[0] < size[1] or self._buffer.shape[1] < size[0]:
            shape = (max(size[1], self._buffer.shape[0]), max(size[0], self._buffer.shape[1]), 3)
            self._buffer = np.empty(shape, dtype=np.uint8)
        out = self._buffer[: size[1], : size[0]]  # one buffer for every band
        out[...] = 255
        for i in tiles:
            paste_tile(out, (x, y), self._cache[int(i)], self.tiff.tile_origin(i), self.size)
        return out

    def forget_above(self, y: int) -> None:
        """Drop the decoded tiles that end above level row ``y`` (no later band needs them)."""
        if self.tiff is not None:
            tile_h = self.tiff.tile_height
            for i in [i for i in self._cache if self.tiff.tile_origin(i)[1] + tile_h <= y]:
                del self._cache[i]

    def close(self) -> None:
        self._cache.clear()
        if self.tiff is not None:
            self.tiff.close()
