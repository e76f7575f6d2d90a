"""A rehearsal job folder shaped like real CAMELYON16 + TRIDENT v0.3.0 output, made in a minute.

The demo cohort is made *by* ``helpers``; this folder is made to look like what a reader
brings, so that the book is tested against the shapes real data has and the demo has not:

- slides in three formats: generic tiled TIFF (mpp in the resolution tags, no objective
  power, 2x level steps, 512-px JPEG tiles, as CAMELYON16's ``.tif``), Aperio-style SVS
  (4x level steps, 240-px tiles, ``AppMag`` present or absent) and a 20x-native Aperio
  slide (mpp ~0.5, so ``patch_size_level0`` is 512); one slide of CAMELYON16 size
  (97,792 x 219,648 level-0 px, 10 levels) written cheaply: identical tiles are stored once
  and shared through the TIFF's tile offsets;
- a TRIDENT job folder ``trident_processed/20x_512px_0px_overlap/{patches,features_uni_v1}``
  with TRIDENT's attribute types and placement (``patch_size_level0`` and
  ``target_magnification`` floats; ``name``, ``savetodir``, ``encoder`` on the ``features``
  dataset; coords row by row, by y then x; one h5 chunk per row), float16 1024-dim
  features, bags from a few hundred to several thousand patches, and
  ``trident_processed/thumbnails/<name>.jpg`` (longest side 1000 px);
- tumour slides with an XML only, a mask only, both, an exclusion group (``_2``), and one
  whose lesion is smaller than half a patch (no positive patch);
- label CSVs ``wsi_name,wsi_label`` (train and test, both classes in each);
- ``patch_labels/`` made by the book's own tool (:func:`helpers.labels.label_folder`), or,
  with ``patch_labels=False``, no ``patch_labels`` folder at all.

The pixels are coarse (flat stain colours with a fixed texture, tissue outlines on a 64-px
grid) and the features are synthetic (tumour patches are shifted along a fixed direction in
proportion to their tumour area), so training on them is meaningful but not realistic.
Everything is seeded: two runs write the same files.

Usage::

    python tests/rehearsal.py --out data/rehearsal [--no-patch-labels]

prints (on stdout; progress goes to stderr) ``export MIL_BOOK_...=...`` lines that point the
book at the folder, so ``eval "$(python tests/rehearsal.py --out DIR)"`` sets them;
:func:`make_rehearsal` returns them as a dict.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path

import cv2
import h5py
import imagecodecs
import numpy as np
import tifffile

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, Path(__file__).resolve().parent):  # runnable as a script from anywhere
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from helpers import synth  # noqa: E402
from helpers.annotations import asap_xml  # noqa: E402
from helpers.layout import (  # noqa: E402
    ANNOTATIONS_DIR,
    DEFAULT_PATCH_DIR,
    JOB_DIR,
    MASKS_DIR,
    WSIS_DIR,
    annotation_file,
    coords_file,
    mask_file,
)

VERSION = 1
SEED = 2016
ENCODER = "uni_v1"
FEATURE_DIM = 1024
PATCH_DIR = DEFAULT_PATCH_DIR
PATCH_SIZE = 512
TARGET_MAG = 20.0  # TRIDENT's --mag is a float
MAP_PX = 64  # level-0 pixels per pixel of the tissue map the slides are painted from
MANIFEST = "rehearsal.json"

# colours: glass, tissue (pink), tumour (purple); a fixed texture is added on top
COLOURS = np.array([[242, 242, 240], [226, 166, 204], [146, 92, 172]], np.int16)


@dataclass(frozen=True)
class Format:
    """How a slide file is written."""

    name: str  # "generic" (CAMELYON16-like .tif) or "aperio" (.svs-like)
    mpp: float
    app_mag: int | None  # Aperio AppMag (openslide.objective-power); None: absent
    step: int  # downsample between levels: 2 or 4
    tile: int
    suffix: str

    @property
    def level0_mag(self) -> int:
        """The magnification TRIDENT infers from the mpp (it reads mpp before objective power)."""
        for bound, mag in ((0.16, 80), (0.2, 60), (0.3, 40), (0.6, 20), (1.2, 10), (2.4, 5)):
            if self.mpp < bound:
                return mag
        raise ValueError(f"mpp {self.mpp} too coarse")

    @property
    def patch_size_level0(self) -> int:
        return int(PATCH_SIZE * self.level0_mag // TARGET_MAG)


GENERIC = Format("generic", 0.243, None, 2, 512, ".tif")  # Radboud-like
GENERIC_UMCU = Format("generic", 0.226, None, 2, 512, ".tif")  # Utrecht-like
APERIO40 = Format("aperio", 0.2499, 40, 4, 240, ".svs")
APERIO_NOMAG = Format("aperio", 0.2520, None, 4, 240, ".svs")
APERIO20 = Format("aperio", 0.4990, 20, 4, 240, ".svs")


@dataclass(frozen=True)
class Spec:
    """One slide: name, split, label, format, size and where its tumour labels come from."""

    name: str
    split: str
    label: int
    fmt: Format
    patches: int  # the bag size aimed at (the grid decides the exact number)
    lesion: str = "none"  # none, macro, micro, tiny (smaller than half a patch)
    source: str = "none"  # none, xml, mask, both
    exclusion: bool = False  # XML has an exclusion (_2) polygon inside the lesion
    lobes: int = 1
    aspect: float = 1.6  # height / width
    to_border: bool = False  # tissue reaches the right edge: a patch crosses the border
    size: tuple[int, int] | None = None  # (width, height) level 0, else from ``patches``
    extra: dict = field(default_factory=dict)


def plan() -> list[Spec]:
    """The slides: 14 train (8 normal, 6 tumour), 10 test (5 normal, 5 tumour)."""
    return [
        Spec("normal_001", "train", 0, GENERIC, 300),
        Spec("normal_002", "train", 0, GENERIC_UMCU, 800, lobes=2),
        Spec("normal_003", "train", 0, APERIO40, 1500),
        Spec("normal_004", "train", 0, APERIO_NOMAG, 500),
        Spec("normal_005", "train", 0, APERIO20, 1200, lobes=2),
        Spec("normal_006", "train", 0, GENERIC, 2600, lobes=2),
        Spec("normal_007", "train", 0, GENERIC, 400, to_border=True),
        Spec("normal_008", "train", 0, APERIO40, 900),
        Spec("tumor_001", "train", 1, GENERIC, 1800, "macro", "xml"),
        Spec("tumor_002", "train", 1, GENERIC_UMCU, 1100, "macro", "mask"),
        Spec("tumor_003", "train", 1, APERIO40, 1400, "macro", "xml", exclusion=True),
        Spec("tumor_004", "train", 1, GENERIC, 700, "micro", "both"),
        Spec("tumor_005", "train", 1, APERIO_NOMAG, 600, "micro", "mask"),
        Spec("tumor_006", "train", 1, GENERIC, 350, "macro", "xml", lobes=2),
        Spec("test_001", "test", 0, GENERIC, 1000),
        Spec(
            "test_002",
            "test",
            1,
            GENERIC,
            0,
            "macro",
            "both",
            exclusion=True,
            lobes=3,
            size=(97792, 219648),
        ),
        Spec("test_003", "test", 0, APERIO_NOMAG, 450),
        Spec("test_004", "test", 1, GENERIC_UMCU, 1300, "macro", "xml"),
        Spec("test_005", "test", 1, GENERIC, 500, "micro", "mask"),
        Spec("test_006", "test", 0, APERIO40, 2000, lobes=2),
        Spec("test_007", "test", 1, GENERIC, 600, "tiny", "xml"),
        Spec("test_008", "test", 0, GENERIC, 250, to_border=True),
        Spec("test_009", "test", 1, APERIO40, 900, "micro", "both"),
        Spec("test_010", "test", 0, GENERIC_UMCU, 3500, lobes=2),
    ]


# ------------------------------------------------------------------------------------------
# geometry: a tissue map at 64 level-0 px per pixel, lesion polygons in level-0 px


def _slide_size(spec: Spec, rng: np.random.Generator) -> tuple[int, int]:
    if spec.size is not None:
        return spec.size
    p = spec.fmt.patch_size_level0
    # an ellipse filling ~80% of each side covers ~half the slide; the grid adds the rim
    area = spec.patches * p * p / 0.5
    width = math.sqrt(area / spec.aspect)
    width = int(width * rng.uniform(0.97, 1.03)) // 16 * 16 + 7  # not a multiple of the grid
    return width, int(width * spec.aspect) // 16 * 16 + 3


def _tissue_map(spec: Spec, rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Bool ``(ceil(height / 64), ceil(width / 64))``: one or more wobbly lobes."""
    h, w = -(-height // MAP_PX), -(-width // MAP_PX)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.full((h, w), np.inf, np.float32)
    for k in range(spec.lobes):
        cy = h * (k + 0.5) / spec.lobes + rng.normal(0, h * 0.01)
        cx = w * 0.5 + rng.normal(0, w * 0.03)
        ay = h / spec.lobes / 2 * 0.82
        ax = w / 2 * (0.82 if spec.lobes == 1 else 0.7)
        if spec.size is not None:  # the CAMELYON16-size slide: sections on ~1/4 of the glass
            ax, ay = ax * 0.6, ay * 0.75
        dist = np.minimum(dist, np.hypot((xx - cx) / ax, (yy - cy) / ay))
    scale = max(8.0, min(h, w) / 6)
    wobble = 0.08 * synth.smooth_field(rng, (h, w), scale)
    tissue = (dist + wobble) < 1.0
    if spec.to_border:  # a lobe cut by the slide's right edge
        band = (np.abs(yy - h / 2) < h * 0.12) & (xx > w * 0.5)
        tissue |= band
    return tissue


def _place_lesion(
    spec: Spec, rng: np.random.Generator, tissue: np.ndarray
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Tumour and exclusion polygons (level-0 ``(x, y)``) inside the tissue."""
    if spec.lesion == "none":
        return [], []
    p = spec.fmt.patch_size_level0
    radius = {
        "macro": rng.uniform(2.2, 3.2) * p,
        "micro": rng.uniform(0.6, 0.8) * p,
        "tiny": 0.3 * p,  # area 0.28 p^2 < half a patch: no patch can exceed 0.5
    }[spec.lesion]
    if spec.size is not None:
        radius = 9 * p
    depth = cv2.distanceTransform(tissue.astype(np.uint8), cv2.DIST_L2, 5) * MAP_PX
    ok = np.argwhere(depth > 1.5 * radius)
    if not len(ok):
        raise RuntimeError(f"{spec.name}: no room for a {spec.lesion} lesion")
    cy, cx = (ok[rng.integers(len(ok))] + 0.5) * MAP_PX
    if spec.lesion == "tiny":  # centred on a grid corner: it splits over four patches
        cx, cy = round(cx / p) * p + 0.5, round(cy / p) * p + 0.5
    tumour = [synth.lesion_polygon(rng, (float(cx), float(cy)), radius)]
    if spec.lesion == "macro" and spec.size is not None:  # a second lesion on the big slide
        cy2, cx2 = (ok[rng.integers(len(ok))] + 0.5) * MAP_PX
        tumour.append(synth.lesion_polygon(rng, (float(cx2), float(cy2)), 4 * p))
    holes = []
    if spec.exclusion:
        holes = [synth.lesion_polygon(rng, (float(cx), float(cy)), 0.35 * radius)]
    return tumour, holes


# ------------------------------------------------------------------------------------------
# rendering: class maps (0 glass, 1 tissue, 2 tumour) of any window at any downsample


@dataclass
class Geometry:
    width: int
    height: int
    tissue: np.ndarray  # bool map at MAP_PX
    tumour: list[np.ndarray]
    holes: list[np.ndarray]

    def __post_init__(self) -> None:
        self.tumour_boxes = [(p.min(0), p.max(0)) for p in self.tumour]

    def classes(self, x0: float, y0: float, w: int, h: int, downsample: float) -> np.ndarray:
        """uint8 ``(h, w)`` class of each pixel of a window read at ``downsample``."""
        mh, mw = self.tissue.shape
        iy = np.clip(
            ((y0 + (np.arange(h) + 0.5) * downsample) // MAP_PX).astype(np.int64), 0, mh - 1
        )
        ix = np.clip(
            ((x0 + (np.arange(w) + 0.5) * downsample) // MAP_PX).astype(np.int64), 0, mw - 1
        )
        iy0, ix0 = iy[0], ix[0]
        block = self.tissue[iy0 : iy[-1] + 1, ix0 : ix[-1] + 1].view(np.uint8)
        out = block.take(iy - iy0, axis=0).take(ix - ix0, axis=1)
        if self._touches_tumour(x0, y0, w * downsample, h * downsample):
            tumour = self._fill(self.tumour, x0, y0, w, h, downsample)
            if self.holes:
                tumour &= ~self._fill(self.holes, x0, y0, w, h, downsample)
            out[tumour] = 2
        return out

    def _touches_tumour(self, x0, y0, w0, h0) -> bool:
        return any(
            lo[0] < x0 + w0 and hi[0] > x0 and lo[1] < y0 + h0 and hi[1] > y0
            for lo, hi in self.tumour_boxes
        )

    @staticmethod
    def _fill(polys, x0, y0, w, h, downsample) -> np.ndarray:
        img = np.zeros((h, w), np.uint8)
        for p in polys:
            pts = np.round(((p - [x0, y0]) / downsample - 0.5) * 16).astype(np.int32)
            cv2.fillPoly(img, [pts], 1, shift=4)
        return img.astype(bool)

    def uniform_tiles(self, tile: int, downsample: int, nx: int, ny: int) -> np.ndarray:
        """int ``(ny, nx)``: the class of each tile of a level if it has one class
        throughout (0 glass, 1 tissue), else -1; one summed-area table for all tiles."""
        span = tile * downsample
        sat = cv2.integral(self.tissue.view(np.uint8))

        def edges(n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
            lo = np.arange(n) * span
            hi = np.minimum(lo + span, size)
            return lo // MAP_PX, (hi - 1) // MAP_PX + 1

        mx0, mx1 = edges(nx, self.width)
        my0, my1 = edges(ny, self.height)
        count = sat[my1][:, mx1] - sat[my1][:, mx0] - sat[my0][:, mx1] + sat[my0][:, mx0]
        area = (my1 - my0)[:, None] * (mx1 - mx0)[None, :]
        out = np.where(count == 0, 0, np.where(count == area, 1, -1))
        for lo, hi in self.tumour_boxes:  # tiles a lesion's box touches are drawn
            tx = np.arange(nx) * span
            ty = np.arange(ny) * span
            hit_x = (tx < hi[0]) & (tx + span > lo[0])
            hit_y = (ty < hi[1]) & (ty + span > lo[1])
            out[np.ix_(hit_y, hit_x)] = -1
        return out


def _texture(tile: int) -> np.ndarray:
    """uint8 ``(tile, tile)`` texture codes 0..15: fine grain plus blotches, seeded."""
    rng = np.random.default_rng([SEED, tile])
    fine = rng.integers(0, 8, (tile, tile), dtype=np.uint8)
    coarse = cv2.resize(
        rng.integers(0, 9, (tile // 16, tile // 16), dtype=np.uint8),
        (tile, tile),
        interpolation=cv2.INTER_LINEAR,
    )
    return fine + coarse


def _palette() -> np.ndarray:
    """cv2.LUT table: entry ``16 * class + texture`` -> RGB (glass stays flat)."""
    lut = np.zeros((256, 3), np.int16)
    for c, colour in enumerate(COLOURS):
        shade = np.arange(16) - 8 if c else np.zeros(16)
        lut[16 * c : 16 * c + 16] = colour + shade[:, None] * np.array([1, 1.2, 0.9])
    return np.clip(lut, 0, 255).astype(np.uint8).reshape(256, 1, 3)


PALETTE = _palette()


def _paint(classes: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(h, w, 3)`` of a class map, with the texture cropped to its size."""
    h, w = classes.shape
    idx = cv2.add(cv2.multiply(classes, 16), texture[:h, :w])
    return cv2.LUT(cv2.merge([idx, idx, idx]), PALETTE)


JPEG_ARGS = {"level": 80, "colorspace": "RGB", "outcolorspace": "YCBCR", "subsampling": (2, 2)}


def _write_levels(path: Path, geo: Geometry, fmt: Format, n_levels: int, desc: str | None, kind):
    """Write a pyramid of ``n_levels`` pages, each ``fmt.step`` times smaller than the last.

    ``kind`` is ``"rgb"`` (JPEG, painted) or ``"mask"`` (uint8 0/1/2, deflate). Large levels
    are written tile by tile from an iterator; tiles of one class throughout are encoded
    once, written once, and every later copy points at the first through the tile offsets.
    """
    tile = fmt.tile if kind == "rgb" else 512
    texture = _texture(tile) if kind == "rgb" else None
    res = (1e4 / fmt.mpp, 1e4 / fmt.mpp)
    shared: list[tuple[int, list[int | None]]] = []  # (page, first-copy index per tile)

    def encode(classes: np.ndarray) -> bytes:
        if kind == "rgb":
            return imagecodecs.jpeg_encode(_paint(classes, texture), **JPEG_ARGS)
        return imagecodecs.zlib_encode(classes, level=1)

    common = (
        {"photometric": "rgb", "compression": "jpeg", "compressionargs": {"level": 80}}
        if kind == "rgb"
        else {"photometric": "minisblack", "compression": "zlib", "compressionargs": {"level": 1}}
    )
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        for level in range(n_levels):
            downsample = fmt.step**level
            w, h = -(-geo.width // downsample), -(-geo.height // downsample)
            extra = {
                "description": desc if level == 0 else None,
                "subfiletype": 0 if level == 0 else 1,
                "resolution": (res[0] / downsample, res[1] / downsample),
                "resolutionunit": "CENTIMETER",
                "metadata": None,
                "tile": (tile, tile),
                **common,
            }
            if w * h <= 16_000_000:
                data = geo.classes(0, 0, w, h, downsample)
                if kind == "rgb":
                    data = _paint(data, np.tile(texture, (-(-h // tile), -(-w // tile))))
                tif.write(data, **extra)
                continue
            index: list[int | None] = []
            tiles = _tile_stream(geo, tile, downsample, (w, h), encode, index)
            shape = (h, w, 3) if kind == "rgb" else (h, w)
            tif.write(tiles, shape=shape, dtype=np.uint8, **extra)
            shared.append((level, index))
    if shared:
        _point_copies_at_first(path, shared)


def _tile_stream(geo: Geometry, tile: int, downsample: int, size: tuple, encode, index: list):
    """The encoded tiles of a level, row by row; a tile of one class throughout that was
    seen before is a 1-byte placeholder, and ``index`` records (per tile) which earlier tile
    it copies (``None``: its own bytes)."""
    w, h = size
    nx, ny = -(-w // tile), -(-h // tile)
    uniform = geo.uniform_tiles(tile, downsample, nx, ny).tolist()
    first: dict[int, int] = {}
    for ty in range(ny):
        for tx in range(nx):
            x0, y0 = tx * tile * downsample, ty * tile * downsample
            c = uniform[ty][tx]
            if c < 0:
                c = None
            if c is not None and c in first:
                index.append(first[c])
                yield b"\0"
                continue
            if c is not None:
                first[c] = len(index)
            index.append(None)
            yield encode(geo.classes(x0, y0, tile, tile, downsample))


def _point_copies_at_first(path: Path, shared: list[tuple[int, list[int | None]]]) -> None:
    """Rewrite the tile offsets of each ``(page, index)`` so copies point at the first tile."""
    with tifffile.TiffFile(path, mode="r+b") as tf:
        for page_no, index in shared:
            page = tf.pages[page_no]
            offsets = np.array(page.dataoffsets, np.uint64)
            counts = np.array(page.databytecounts, np.uint64)
            for i, j in enumerate(index):
                if j is not None:
                    offsets[i], counts[i] = offsets[j], counts[j]
            page.tags["TileOffsets"].overwrite(offsets)
            page.tags["TileByteCounts"].overwrite(counts)


def _n_levels(fmt: Format, width: int, height: int) -> int:
    """Levels down to a longest side under ~1,000 px (CAMELYON16 has 9-10 at 2x steps)."""
    n = 1
    while max(width, height) / fmt.step ** (n - 1) > 1000 and n < 12:
        n += 1
    return n


def aperio_description(fmt: Format, width: int, height: int) -> str:
    mag = f"|AppMag = {fmt.app_mag}" if fmt.app_mag is not None else ""
    return (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"({fmt.tile}x{fmt.tile}) JPEG/RGB Q=80{mag}|MPP = {fmt.mpp:.4f}"
    )


def write_asap_xml(path: Path, tumour: list[np.ndarray], holes: list[np.ndarray]) -> None:
    """ASAP XML as CAMELYON16 ships it: tumour polygons in groups ``_0``, exclusions in ``_2``."""
    annotations = [(p, "_0") for p in tumour] + [(p, "_2") for p in holes]
    groups = {"_0": "#FF0000", "_1": "#FF0000", "_2": "#00FF00"}
    path.write_text(asap_xml(annotations, groups, decimals=4))


# ------------------------------------------------------------------------------------------
# TRIDENT's outputs


def grid_coords(geo: Geometry, p: int) -> np.ndarray:
    """TRIDENT's patch grid: cells from (0, 0) with step ``p`` while ``x < width`` (so the
    last column and row may cross the border), kept when they touch tissue; row by row."""
    cols, rows = -(-geo.width // p), -(-geo.height // p)
    k = p // MAP_PX
    mh, mw = geo.tissue.shape
    padded = np.zeros((rows * k, cols * k), bool)
    padded[:mh, :mw] = geo.tissue
    touched = padded.reshape(rows, k, cols, k).any(axis=(1, 3))
    iy, ix = np.nonzero(touched)  # row-major: sorted by y, then x
    return np.stack([ix * p, iy * p], axis=1).astype(np.int64)


def tumour_fraction(geo: Geometry, coords: np.ndarray, p: int) -> np.ndarray:
    """Share of each patch inside the lesions (minus exclusions), from a 1/16-patch raster."""
    out = np.zeros(len(coords))
    if not geo.tumour:
        return out
    s = p / 16
    for i, (x, y) in enumerate(coords):
        if geo._touches_tumour(x, y, p, p):
            c = geo.classes(float(x), float(y), 16, 16, s)
            out[i] = (c == 2).mean()
    return out


def coords_attrs(spec: Spec, geo: Geometry, savetodir: Path) -> dict:
    """The attributes TRIDENT v0.3.0 puts on ``coords``, with its types."""
    mag = spec.fmt.level0_mag  # int, from the mpp
    return {
        "patch_size": PATCH_SIZE,  # int (--patch_size is an int)
        "patch_size_level0": PATCH_SIZE * mag // TARGET_MAG,  # float: int * int // float
        "level0_magnification": mag,
        "target_magnification": TARGET_MAG,  # float (--mag is a float)
        "overlap": 0,
        "name": spec.name,
        "savetodir": str(savetodir),
        "level0_width": geo.width,
        "level0_height": geo.height,
    }


def save_h5(path: Path, assets: dict, attributes: dict) -> None:
    """h5 files laid out as TRIDENT writes them: one chunk per row, resizable first axis."""
    with h5py.File(path, "w") as f:
        for key, val in assets.items():
            dset = f.create_dataset(
                key,
                shape=val.shape,
                maxshape=(None,) + val.shape[1:],
                chunks=(1,) + val.shape[1:],
                dtype=val.dtype,
            )
            dset[:] = val
            for k, v in attributes.get(key, {}).items():
                dset.attrs[k] = v


def synthetic_features(
    rng: np.random.Generator, coords: np.ndarray, fraction: np.ndarray, p: int, tumour_dir
) -> np.ndarray:
    """float16 ``(N, 1024)``: noise, a slow spatial drift, a slide offset, and a shift along
    ``tumour_dir`` proportional to the patch's tumour fraction."""
    n = len(coords)
    base = rng.standard_normal((n, FEATURE_DIM), dtype=np.float32)
    slide = 0.3 * rng.standard_normal(FEATURE_DIM, dtype=np.float32)
    phase = (coords[:, :1] / p * 0.2 + coords[:, 1:] / p * 0.13).astype(np.float32)
    drift = np.sin(phase + np.arange(FEATURE_DIM, dtype=np.float32) * 0.37)
    x = base + slide + 0.4 * drift + 3.0 * fraction[:, None].astype(np.float32) * tumour_dir
    return x.astype(np.float16)


# ------------------------------------------------------------------------------------------
# the folder


def spec(name: str) -> Spec:
    """The :class:`Spec` of slide ``name``."""
    return {s.name: s for s in plan()}[name]


def _geometry(spec: Spec) -> tuple[Geometry, np.random.Generator]:
    index = [s.name for s in plan()].index(spec.name)
    rng = np.random.default_rng([SEED, index])
    width, height = _slide_size(spec, rng)
    tissue = _tissue_map(spec, rng, width, height)
    tumour, holes = _place_lesion(spec, rng, tissue)
    return Geometry(width, height, tissue, tumour, holes), rng


def slide_geometry(spec: Spec) -> Geometry:
    """Tissue map and lesion polygons of a slide, as drawn into its files."""
    return _geometry(spec)[0]


def _write_slide_files(spec: Spec, geo: Geometry, out: Path) -> tuple[Path, int]:
    """The slide's pyramid, and its mask and / or XML: ``(slide path, number of levels)``."""
    fmt = spec.fmt
    n_levels = _n_levels(fmt, geo.width, geo.height)
    wsi = out / WSIS_DIR / f"{spec.name}{fmt.suffix}"
    desc = aperio_description(fmt, geo.width, geo.height) if fmt.name == "aperio" else None
    _write_levels(wsi, geo, fmt, n_levels, desc, "rgb")
    if spec.source in ("mask", "both"):  # CAMELYON16's masks: generic TIFF, 2x steps
        mask_fmt = Format("generic", fmt.mpp, None, 2, 512, ".tif")
        mask_levels = _n_levels(mask_fmt, geo.width, geo.height)
        _write_levels(
            out / MASKS_DIR / mask_file(spec.name), geo, mask_fmt, mask_levels, None, "mask"
        )
    if spec.source in ("xml", "both"):
        write_asap_xml(out / ANNOTATIONS_DIR / annotation_file(spec.name), geo.tumour, geo.holes)
    return wsi, n_levels


def _write_thumbnail(wsi: Path, path: Path, width: int, height: int) -> None:
    """TRIDENT's thumbnail of a ``width x height`` slide: longest side 1000 px, PIL's default
    JPEG quality."""
    import openslide

    with openslide.OpenSlide(str(wsi)) as slide:
        size = (
            (1000, int(1000 * height / width))
            if width > height
            else (int(1000 * width / height), 1000)
        )
        slide.get_thumbnail(size).convert("RGB").save(path)


def _write_trident_h5(
    spec: Spec, geo: Geometry, job: Path, coords_level0: np.ndarray, feats: np.ndarray
) -> None:
    """``patches/<name>_patches.h5`` and ``features_<encoder>/<name>.h5`` as TRIDENT writes them."""
    attrs = coords_attrs(spec, geo, job / PATCH_DIR)
    patches_dir = job / PATCH_DIR / "patches"
    save_h5(patches_dir / coords_file(spec.name), {"coords": coords_level0}, {"coords": attrs})
    feats_dir = job / PATCH_DIR / f"features_{ENCODER}"
    save_h5(
        feats_dir / f"{spec.name}.h5",
        {"features": feats, "coords": coords_level0},
        {
            "features": {"name": spec.name, "savetodir": str(feats_dir), "encoder": ENCODER},
            "coords": attrs,
        },
    )


def make_slide(spec: Spec, out: Path, tumour_dir: np.ndarray) -> dict:
    """Write one slide, its mask / XML, thumbnail, coords and features; return its row."""
    geo, rng = _geometry(spec)
    fmt = spec.fmt
    wsi, n_levels = _write_slide_files(spec, geo, out)
    thumbnail = out / JOB_DIR / "thumbnails" / f"{spec.name}.jpg"
    _write_thumbnail(wsi, thumbnail, geo.width, geo.height)
    patch_size_level0 = fmt.patch_size_level0
    coords_level0 = grid_coords(geo, patch_size_level0)
    frac = tumour_fraction(geo, coords_level0, patch_size_level0)
    feats = synthetic_features(rng, coords_level0, frac, patch_size_level0, tumour_dir)
    _write_trident_h5(spec, geo, out / JOB_DIR, coords_level0, feats)
    return {
        "name": spec.name,
        "split": spec.split,
        "label": spec.label,
        "file": wsi.name,
        "format": fmt.name,
        "mpp": fmt.mpp,
        "objective_power": fmt.app_mag,
        "level_step": fmt.step,
        "levels": n_levels,
        "width": geo.width,
        "height": geo.height,
        "patch_size_level0": patch_size_level0,
        "n_patches": len(coords_level0),
        "n_tumour_patches": int((frac > 0.5).sum()),
        "max_tumour_fraction": float(frac.max(initial=0.0)),
        "lesion": spec.lesion,
        "label_source": spec.source,
        "exclusion": spec.exclusion,
    }


def _write_csv(path: Path, rows: list[dict]) -> None:
    lines = ["wsi_name,wsi_label"] + [f"{r['name']},{r['label']}" for r in rows]
    path.write_text("\n".join(lines) + "\n")


def environment(out: Path) -> dict[str, str]:
    """The ``MIL_BOOK_*`` variables that point the book at the folder ``out``."""
    out = Path(out).resolve()
    return {
        "MIL_BOOK_DATA": "camelyon16",
        "MIL_BOOK_WSI_DIR": str(out / WSIS_DIR),
        "MIL_BOOK_MASK_DIR": str(out / MASKS_DIR),
        "MIL_BOOK_ANNOTATIONS_DIR": str(out / ANNOTATIONS_DIR),
        "MIL_BOOK_JOB_DIR": str(out / JOB_DIR),
        "MIL_BOOK_ENCODER": ENCODER,
        "MIL_BOOK_TRAIN_CSV": str(out / "train.csv"),
        "MIL_BOOK_TEST_CSV": str(out / "test.csv"),
        "MIL_BOOK_PATCH_DIR": PATCH_DIR,
    }


def _stamp(patch_labels: bool) -> dict:
    return {"version": VERSION, "seed": SEED, "patch_labels": bool(patch_labels)}


def _make_slides(root: Path, tumour_dir: np.ndarray, workers: int | None, quiet: bool) -> list:
    """Every slide, in parallel processes (each slide is seeded on its own: same files)."""
    specs = plan()
    workers = workers or min(2, os.cpu_count() or 1)
    if workers == 1:
        rows = [make_slide(spec, root, tumour_dir) for spec in specs]
    else:
        # spawn, not fork (OpenCV's threads); the children import this module by the name
        # it has here, with this process's sys.path
        module = sys.modules[__name__]
        if __name__ == "__main__":
            import importlib

            module = importlib.import_module(Path(__file__).stem)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(module.make_slide, s, root, tumour_dir) for s in specs]
            rows = [f.result() for f in futures]
    if not quiet:
        for r in rows:
            print(f"  {r['name']:<11} {r['n_patches']:>6} patches", file=sys.stderr)
    return rows


def make_rehearsal(
    out: Path, patch_labels: bool = True, quiet: bool = True, workers: int | None = None
) -> dict[str, str]:
    """Write the rehearsal folder into ``out`` (unless an identical one is there already).

    Arguments:
        out: the folder; it is replaced when it holds another version or variant.
        patch_labels: also write ``patch_labels/`` with ``helpers.labels.label_folder``
            (from the masks where a slide has one, else from its XML); ``False`` writes
            none, as a reader who has not run step 3 of the README has.
        quiet: print nothing.
        workers: processes writing slides (default: up to 2).

    Returns:
        The ``MIL_BOOK_*`` environment variables pointing the book at ``out``.
    """
    out = Path(out)
    manifest = out / MANIFEST
    if manifest.exists():
        info = json.loads(manifest.read_text())
        if {k: info.get(k) for k in _stamp(patch_labels)} == _stamp(patch_labels):
            return environment(out)
    if out.exists():
        if not manifest.exists() and any(out.iterdir()):
            raise FileExistsError(f"{out} exists and is not a rehearsal folder; not replacing it")
        shutil.rmtree(out)
    t0 = time.perf_counter()
    tmp = _empty_folders(out.with_name(f".{out.name}.partial-{os.getpid()}"))
    try:
        _write_contents(tmp, patch_labels, workers, quiet)
        # the paths inside the h5 files name the final folder, as TRIDENT's would
        _fix_savetodir(tmp, out)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if not quiet:
        print(
            f"rehearsal folder ready in {out} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr
        )
    return environment(out)


def _empty_folders(tmp: Path) -> Path:
    """``tmp`` (emptied) with the cohort's and the TRIDENT job's folders in it."""
    if tmp.exists():
        shutil.rmtree(tmp)
    job = tmp / JOB_DIR
    for d in (
        tmp / WSIS_DIR,
        tmp / MASKS_DIR,
        tmp / ANNOTATIONS_DIR,
        job / "thumbnails",
        job / PATCH_DIR / "patches",
        job / PATCH_DIR / f"features_{ENCODER}",
    ):
        d.mkdir(parents=True)
    return tmp


def _write_contents(tmp: Path, patch_labels: bool, workers: int | None, quiet: bool) -> None:
    """Every slide, the label CSVs, the patch labels (if asked) and the manifest."""
    rng = np.random.default_rng([SEED, 999])
    tumour_dir = rng.standard_normal(FEATURE_DIM).astype(np.float32)
    tumour_dir /= np.linalg.norm(tumour_dir) / math.sqrt(FEATURE_DIM) * 2.5
    rows = _make_slides(tmp, tumour_dir, workers, quiet)
    _write_csv(tmp / "wsi_labels.csv", rows)
    _write_csv(tmp / "train.csv", [r for r in rows if r["split"] == "train"])
    _write_csv(tmp / "test.csv", [r for r in rows if r["split"] == "test"])
    if patch_labels:
        _label(tmp)
    (tmp / MANIFEST).write_text(
        json.dumps({**_stamp(patch_labels), "encoder": ENCODER, "slides": rows}, indent=1)
    )


def _label(root: Path) -> None:
    """``patch_labels/`` by the book's own tool, in one run although the slides mix patch
    sizes (1024 and 512 level-0 px): without ``patch_size`` each slide's
    ``patch_size_level0`` is read from its coords file."""
    from helpers.labels import label_folder

    trident = root / JOB_DIR / PATCH_DIR
    label_folder(
        csv_path=root / "wsi_labels.csv",
        coords_dir=trident / "patches",
        save_dir=trident / "patch_labels",
        masks_dir=root / MASKS_DIR,
        annotations_dir=root / ANNOTATIONS_DIR,
        progress=False,
    )


def _fix_savetodir(tmp: Path, out: Path) -> None:
    old, new = str(tmp), str(out.resolve())
    for path in (tmp / JOB_DIR).rglob("*.h5"):
        with h5py.File(path, "r+") as f:
            for dset in f.values():
                v = dset.attrs.get("savetodir")
                if isinstance(v, str) and v.startswith(old):
                    dset.attrs["savetodir"] = new + v[len(old) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--no-patch-labels", action="store_true", help="write no patch_labels/ folder"
    )
    args = parser.parse_args(argv)
    env = make_rehearsal(Path(args.out), patch_labels=not args.no_patch_labels, quiet=False)
    for k, v in env.items():
        print(f"export {k}={shlex.quote(v)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["make_rehearsal", "environment", "plan", "Spec", "Format", "asdict"]
