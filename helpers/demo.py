"""The demo cohort: CAMELYON16 in miniature, made locally and deterministically.

``python -m helpers.demo [--out DIR] [--seed N] [--force]`` writes (default ``DIR = data/demo``)::

    DIR/wsis/<name>.tif                 pyramidal tiled-JPEG TIFF, Aperio-style (20x, 0.5 mpp)
    DIR/annotations/<name>.xml          ASAP XML tumour polygons (tumour slides), level-0 px
    DIR/masks/<name>_mask.tif           pyramidal mask: 0 background / 1 tissue / 2 tumour
    DIR/wsi_labels.csv, train.csv, test.csv          columns wsi_name,wsi_label
    DIR/trident_processed/thumbnails/<name>.jpg
    DIR/trident_processed/20x_512px_0px_overlap/patches/<name>_patches.h5
    DIR/trident_processed/20x_512px_0px_overlap/features_demo_stats/<name>.h5
    DIR/trident_processed/20x_512px_0px_overlap/patch_labels/<name>.h5

70 slides (train: 24 ``normal_NNN`` + 16 ``tumor_NNN``; test: 30 ``test_NNN``, 8 of them
tumour), from two centres (``SlideSpec.centre``: stain, scanner blur and background differ).
Tumour slides hold macro-metastases (about 30-55% of the patches; where the section has room,
up to five small satellite foci beside the main lesion, some of them scattered tumour cells
among lymphocytes), micro-metastases (1-4 tumour patches, at most 1% of a bag of
400-1,300) or, one per split, isolated tumour cells only (clusters smaller than half a
patch: a positive slide without a positive patch). Bags hold about 260 patches on average;
three sections are larger than 1,000 patches. Normal nodes
carry benign look-alikes (germinal centres, sinus-histiocyte clusters). The slides are
painted by :mod:`helpers.synth`; the h5 files are computed from their pixels by
:mod:`helpers.trident` and :mod:`helpers.encoder`, and the patch labels from the masks by
:mod:`helpers.labels`, exactly as for real slides.

Safety: the demo writes only into a new or empty folder, or one that carries its marker
``.mil-book-demo.json`` (written before anything else); any other non-empty folder is refused
with a list of what is in it. ``cohort.json`` lists every file written, with its size and
SHA-256; ``--force`` deletes exactly those files (and the weights ``helpers.training`` cached
in ``models/``) and nothing else: an entry that is not a file the build writes inside the
cohort's folder (``../x``, an absolute path, a reader's file) is never deleted. A cohort made
before the marker existed (``cohort.json`` without ``format``) is checked file by file and
adopted.

Every file is written atomically; an interrupted run (Ctrl-C stops it in about a second, the
worker processes exit when their parent dies) is finished by the next one. Every start
checks each file's size and time against the manifest (a few milliseconds; a file whose
time changed is hashed), and rebuilds what is damaged, or names it on read-only storage.

Fast start: ``helpers.settings.setup()`` asks for ``lazy=True``: the h5 files are written
from arrays shipped with the package (``demo_h5.npz``), byte-identical to a full build, and
a slide's TIFF, mask, XML and thumbnail are painted when a chapter first asks for them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.etree import ElementTree

import cv2
import numpy as np
import pandas as pd
import tifffile
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from helpers import synth
from helpers.annotations import fill_polygons, outline, rasterise, write_asap_xml
from helpers.fileio import atomic_path, file_lock
from helpers.layout import (
    ANNOTATIONS_DIR,
    DEFAULT_PATCH_DIR,
    DEMO_ENCODER,
    JOB_DIR,
    MASKS_DIR,
    WSIS_DIR,
    TridentLayout,
    annotation_file,
    mask_file,
)

# the content: bump it when the files for a seed change (5: satellite foci; 6: features
# computed in float64; 7: painting in float64 with an exact distance transform)
COHORT_VERSION = 7
FORMAT = 3  # the manifest: files with sizes and content hashes, beside a marker
PATCH_SIZE, TARGET_MAG, LEVEL0_MAG, MPP = 512, 20.0, 20, 0.5
PATCH_SIZE_LEVEL0 = int(PATCH_SIZE * LEVEL0_MAG // TARGET_MAG)  # 512
N_LEVELS = 7  # downsamples 1 .. 64
MARKER = ".mil-book-demo.json"  # written first: this folder is a demo cohort
MANIFEST = "cohort.json"  # every file written, with size and sha256
LEGACY_IN_PROGRESS = ".cohort-in-progress.json"  # an unfinished build of helpers.demo < 3
MANAGED = (WSIS_DIR, MASKS_DIR, ANNOTATIONS_DIR, JOB_DIR)
CSV_FILES = ("wsi_labels.csv", "train.csv", "test.csv")


class CohortError(RuntimeError):
    """Bad ``--out`` folder or a cohort that cannot be resumed."""


@dataclass(frozen=True)
class SlideSpec:
    """What one demo slide is: its name, split, label, kind of metastasis, centre and size."""

    index: int
    name: str
    split: str  # "train" or "test"
    label: int  # 0 normal, 1 tumour
    kind: str  # "normal", "macro", "micro" or "itc" (isolated tumour cells only)
    centre: str = "A"  # the hospital whose lab stained and scanned it (synth.CENTRES)
    large: bool = False  # a large section (1,000 patches or more)


DEFAULT_SIZES = ((24, 16), (22, 8))  # (normal, tumour) slides in train and in test
#: (split, kind) whose first slide is a large section (1,000 patches or more)
LARGE_SECTIONS = (("train", "normal"), ("train", "micro"), ("test", "micro"))


def _tumour_kinds(n: int, micro_every: int) -> list[str]:
    """Kinds of the ``n`` tumour slides of a split, in order: every ``micro_every``-th a
    micro-metastasis (from the second), the others macro, and the last one isolated tumour
    cells only when the split holds at least four tumour slides."""
    kinds = ["micro" if i % micro_every == 1 else "macro" for i in range(n)]
    if n >= 4:
        kinds[-1] = "itc"
    return kinds


def plan_cohort(seed: int, sizes: tuple = DEFAULT_SIZES) -> list[SlideSpec]:
    """The slides, deterministic for ``seed``; ``sizes``: ((normal, tumour) train, test).

    Each slide comes from centre A or B (about 60/40, in both splits). The large sections
    are the first micro-metastasis slide of each split and the first normal training slide.
    """
    n_train, n_test = sizes
    rng = np.random.default_rng([seed, 0])
    train = ["normal"] * n_train[0] + _tumour_kinds(n_train[1], micro_every=3)
    test_labels = rng.permutation([0] * n_test[0] + [1] * n_test[1])
    test_kinds = iter(_tumour_kinds(n_test[1], micro_every=3))
    test = [next(test_kinds) if label else "normal" for label in test_labels]
    centres = rng.random(len(train) + len(test)) < 0.6
    specs: list[SlideSpec] = []
    counters = {"normal": 0, "tumor": 0, "test": 0}
    large_left = set(LARGE_SECTIONS)  # the first slide of each of these is large
    for split, kinds in (("train", train), ("test", test)):
        for kind in kinds:
            prefix = "test" if split == "test" else ("normal" if kind == "normal" else "tumor")
            counters[prefix] += 1
            large = (split, kind) in large_left
            large_left.discard((split, kind))
            specs.append(
                SlideSpec(
                    len(specs),
                    f"{prefix}_{counters[prefix]:03d}",
                    split,
                    int(kind != "normal"),
                    kind,
                    "A" if centres[len(specs)] else "B",
                    large,
                )
            )
    return specs


# ---------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CohortPaths(TridentLayout):
    """The demo cohort's files under ``root`` (:mod:`helpers.layout`)."""

    root: Path
    patch_dir = DEFAULT_PATCH_DIR
    encoder = DEMO_ENCODER

    @property
    def job_dir(self) -> Path:
        return self.root / JOB_DIR

    def wsi(self, name: str) -> Path:
        return self.root / WSIS_DIR / f"{name}.tif"

    def mask(self, name: str) -> Path:
        return self.root / MASKS_DIR / mask_file(name)

    def xml(self, name: str) -> Path:
        return self.root / ANNOTATIONS_DIR / annotation_file(name)

    def slide_files(self, spec: SlideSpec) -> list[Path]:
        files = [self.wsi(spec.name), self.mask(spec.name)]
        return files + ([self.xml(spec.name)] if spec.label else [])

    def processed_files(self, spec: SlideSpec) -> list[Path]:
        return [
            self.thumbnail_path(spec.name),
            self.coords_path(spec.name),
            self.features_path(spec.name),
        ]


# ---------------------------------------------------------------------------------------
# one slide: paint, write the pyramid, the mask and the XML
# ---------------------------------------------------------------------------------------
#: Lesion radius ranges in micrometres, by kind: a macro-metastasis is larger than 2 mm across
#: at most; a micro-metastasis covers one to four patches; isolated tumour cells (ITC) are
#: clusters smaller than half a patch (slide positive, no positive patch).
LESION_RADIUS_UM = {"macro": (1100.0, 1900.0), "micro": (130.0, 300.0), "itc": (30.0, 60.0)}
MAX_MICRO_PATCHES = 4
#: Satellite foci around a macro-metastasis: how many are drawn, their radius in
#: micrometres, and the most patches each may cover (as CAMELYON16's macro slides, which
#: often hold small foci beside the main lesion, each a lesion of its own in the FROC). They
#: keep well away from the main lesion, so a small section has room for fewer or none: in
#: the seed-0 cohort (version 7) 7 of the 15 macro slides got 2-3 (XML regions per slide,
#: main included: 1-4).
SATELLITES = (2, 5)
SATELLITE_RADIUS_UM = (90.0, 170.0)
MAX_SATELLITE_PATCHES = 2
#: Cellularity of a satellite focus (share of a solid nest's tumour cells, the rest of it
#: lymph node): some infiltrate the node as scattered cells, as lobular carcinoma does,
#: and are much harder to see than the main lesion.
SATELLITE_CELLULARITY = (0.25, 1.0)


def _place_lesions(
    rng: np.random.Generator, spec: SlideSpec, tissue: np.ndarray
) -> tuple[list[np.ndarray], list[float]]:
    """Tumour polygons (level-0 x, y) inside the tissue and the cellularity of each (1 for a
    solid lesion): one or two macro lesions with up to five satellite foci where the section
    has room, one micro lesion of 1-4 patches, or one to three ITC clusters."""
    if spec.kind == "normal":
        return [], []
    paint_downsample = synth.PAINT_DOWNSAMPLE
    um_to_level0 = 1.0 / MPP
    depth = synth.distance_to_edge(tissue)
    polygons: list[np.ndarray] = []
    n_lesions = {"macro": rng.choice([1, 2], p=[0.6, 0.4]), "micro": 1}.get(
        spec.kind, int(rng.integers(1, 4))
    )
    for _ in range(n_lesions):
        for _attempt in range(400):
            radius = rng.uniform(*LESION_RADIUS_UM[spec.kind]) * um_to_level0
            # macro lesions may reach the tissue border (the tumour is clipped to tissue)
            ok = np.argwhere(
                depth > (0.8 if spec.kind == "macro" else 1.25) * radius / paint_downsample
            )
            if len(ok) == 0:
                continue
            cy, cx = ok[rng.integers(len(ok))] * paint_downsample
            poly = synth.lesion_polygon(rng, (float(cx), float(cy)), radius)
            if spec.kind != "macro":
                fractions = _cell_fractions(poly)
                if spec.kind == "micro":
                    n_cells = int((fractions > 0.55).sum())
                    fits = 1 <= n_cells <= MAX_MICRO_PATCHES and fractions.max() <= 0.98
                else:  # isolated tumour cells: no patch anywhere near half tumour
                    fits = fractions.max() < 0.4
                if not fits:
                    continue
            polygons.append(poly)
            # the next lesion goes elsewhere
            cv2.circle(
                depth,
                (int(cx / paint_downsample), int(cy / paint_downsample)),
                int(2.2 * radius / paint_downsample),
                0.0,
                -1,
            )
            break
    if not polygons:  # pragma: no cover - the sizes above always fit
        raise RuntimeError(f"{spec.name}: could not place a {spec.kind} lesion")
    cellularity = [1.0] * len(polygons)
    if spec.kind == "macro":
        satellites = _place_satellites(rng, depth)
        polygons += satellites
        cellularity += [float(rng.uniform(*SATELLITE_CELLULARITY)) for _ in satellites]
    return polygons, cellularity


def _place_satellites(rng: np.random.Generator, depth: np.ndarray) -> list[np.ndarray]:
    """Small foci (level-0 polygons) away from the lesions already placed (``depth``: the
    distance to the tissue edge, zero around those lesions); each covers 1 to
    ``MAX_SATELLITE_PATCHES`` patches at least half, and the foci keep two patches apart.
    A section too small for all of them gets fewer, or none."""
    paint_downsample = synth.PAINT_DOWNSAMPLE
    gap = 2 * PATCH_SIZE_LEVEL0 / paint_downsample
    polygons = []
    for _ in range(int(rng.integers(SATELLITES[0], SATELLITES[1] + 1))):
        for _attempt in range(200):
            radius = rng.uniform(*SATELLITE_RADIUS_UM) / MPP
            ok = np.argwhere(depth > 1.25 * radius / paint_downsample)
            if len(ok) == 0:
                break
            cy, cx = ok[rng.integers(len(ok))] * paint_downsample
            poly = synth.lesion_polygon(rng, (float(cx), float(cy)), radius)
            n_cells = int((_cell_fractions(poly) > 0.55).sum())
            if not 1 <= n_cells <= MAX_SATELLITE_PATCHES:
                continue
            polygons.append(poly)
            centre = (int(cx / paint_downsample), int(cy / paint_downsample))
            cv2.circle(depth, centre, int(radius / paint_downsample + gap), 0.0, -1)
            break
    return polygons


def _cell_fractions(poly: np.ndarray) -> np.ndarray:
    """Share of each grid cell under ``poly`` (coarse raster, 8 level-0 px), cells of the
    polygon's bounding box: float ``(rows, cols)``."""
    scale = 8
    x0, y0 = (poly.min(0) // PATCH_SIZE_LEVEL0) * PATCH_SIZE_LEVEL0
    x1, y1 = (poly.max(0) // PATCH_SIZE_LEVEL0 + 1) * PATCH_SIZE_LEVEL0
    img = np.zeros((int((y1 - y0) / scale), int((x1 - x0) / scale)), np.uint8)
    fill_polygons(img, [poly], 1, scale, (x0, y0), pixel_centres=False)
    c = PATCH_SIZE_LEVEL0 // scale
    return img.reshape(img.shape[0] // c, c, img.shape[1] // c, c).mean((1, 3))


def pyramid_levels(image: np.ndarray, n_levels: int, interpolation: int) -> list[np.ndarray]:
    """``image`` and its successive halvings: ``n_levels`` arrays, downsamples 1, 2, 4, ..."""
    levels = [image]
    while len(levels) < n_levels:
        prev = levels[-1]
        size = (prev.shape[1] // 2, prev.shape[0] // 2)
        levels.append(cv2.resize(prev, size, interpolation=interpolation))
    return levels


def write_pyramid(path: Path, levels: list[np.ndarray], description: str | None, **kw) -> None:
    """One 256-px-tiled page per pyramid level, written atomically.

    openslide sees the pages as levels only as separate pages marked as reduced images
    (``subfiletype=1``); it ignores SubIFDs. ``kw`` goes to ``tifffile.TiffWriter.write``
    (``photometric``, ``compression``, ...).
    """
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=False) as tif:
        for i, img in enumerate(levels):
            tif.write(
                img,
                tile=(256, 256),
                description=description if i == 0 else None,
                subfiletype=0 if i == 0 else 1,
                metadata=None,
                **kw,
            )


def aperio_description(width: int, height: int) -> str:
    """The ImageDescription that makes openslide read a TIFF as Aperio: 20x, 0.5 um/px."""
    return (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"(256x256) JPEG/RGB Q=80|AppMag = {LEVEL0_MAG}|MPP = {MPP}"
    )


#: Section sizes in grid cells (width range, height range) by kind of slide
SECTION_CELLS = {
    "large": ((44, 49), (34, 39)),
    "micro": ((26, 31), (20, 25)),
    "other": ((17, 23), (12, 17)),
}


def _stain(rng: np.random.Generator, spec: SlideSpec) -> dict:
    """The slide's staining and scanning (its centre's ranges) and its tissue make-up; some
    normal nodes are reactive: many germinal centres and histiocyte clusters."""
    centre = synth.CENTRES[spec.centre]
    stain = {key: rng.uniform(*bounds) for key, bounds in centre.items() if key != "tint"}
    stain["tint"] = centre["tint"]  # fixed per centre
    reactive = rng.random() < 0.3
    stain["stroma"] = rng.uniform(0.12, 0.45)
    stain["follicles"] = rng.uniform(4.0, 9.0) if reactive else rng.uniform(1.0, 5.0)
    stain["histiocytes"] = rng.uniform(0.4, 1.0) if reactive else rng.uniform(0.0, 0.3)
    return stain


def make_slide(spec: SlideSpec, paths: CohortPaths, seed: int) -> None:
    """Paint one slide and write its TIFF pyramid, mask pyramid and (tumour) XML."""
    rng = np.random.default_rng([seed, 1, spec.index])
    paint_downsample = synth.PAINT_DOWNSAMPLE
    size_class = "large" if spec.large else ("micro" if spec.kind == "micro" else "other")
    (w_lo, w_hi), (h_lo, h_hi) = SECTION_CELLS[size_class]
    width = int(rng.integers(w_lo, w_hi)) * PATCH_SIZE_LEVEL0 + 32 * int(rng.integers(0, 12))
    height = int(rng.integers(h_lo, h_hi)) * PATCH_SIZE_LEVEL0 + 32 * int(rng.integers(0, 12))
    shape = (height // paint_downsample, width // paint_downsample)
    # a margin of one grid cell: no patch reaches beyond the slide
    tissue = synth.tissue_shape(rng, shape, margin=PATCH_SIZE_LEVEL0 // paint_downsample + 4)
    # the annotation follows the tissue edge: outline (lesion AND tissue); the texture, the
    # XML and the mask all come from that one outline
    placed, cellularity = _place_lesions(rng, spec, tissue)
    lesions = rasterise(shape, placed, paint_downsample, pixel_centres=False).astype(bool) & tissue
    polygons = outline(lesions, paint_downsample)
    tumor = rasterise(shape, polygons, paint_downsample, pixel_centres=False).astype(bool)
    percent = np.full(shape, 100, np.uint8)  # tumour cells in percent: solid but in sparse foci
    for poly, share in zip(placed, cellularity, strict=True):
        if share < 1.0:
            fill_polygons(
                percent, [poly], round(100 * share), paint_downsample, pixel_centres=False
            )
    painted = synth.paint_section(
        rng, tissue, tumor, _stain(rng, spec), cellularity=percent / 100.0
    )

    # slide pyramid: level 2 (downsample 4) is the painting itself
    top = [
        cv2.resize(painted, (width, height), interpolation=cv2.INTER_LINEAR),
        cv2.resize(painted, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR),
    ]
    write_pyramid(
        paths.wsi(spec.name),
        top + pyramid_levels(painted, N_LEVELS - 2, cv2.INTER_AREA),
        aperio_description(width, height),
        photometric="rgb",
        compression="jpeg",
        compressionargs={"level": 80},
    )
    del top

    # mask pyramid: tissue from the painting, tumour rasterised from the outline at level 0
    mask0 = cv2.resize(tissue.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    mask0[rasterise((height, width), polygons, 1.0, pixel_centres=False).astype(bool)] = 2
    write_pyramid(
        paths.mask(spec.name),
        pyramid_levels(mask0, N_LEVELS, cv2.INTER_NEAREST),
        None,
        photometric="minisblack",
        compression="zlib",
        compressionargs={"level": 1},
    )
    if polygons:
        write_asap_xml(paths.xml(spec.name), polygons)


# ---------------------------------------------------------------------------------------
# one slide: TRIDENT's steps on the written pixels
# ---------------------------------------------------------------------------------------
@contextmanager
def _one_torch_thread():
    """Run the block on one torch thread, so that the worker processes (one slide each) do
    not oversubscribe the cores. (In float32, threads summed a convolution in another order
    and moved float16 features; the float64 features differ by about 1e-16 with the thread
    count, and tests/test_determinism.py checks two threads give the same bytes.)"""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def process_slide(spec: SlideSpec, paths: CohortPaths) -> None:
    """Thumbnail, tissue segmentation, patch grid and features, from the slide's pixels.

    The features are computed in float64 and rounded once to the float16 that is stored
    (numpy's conversion rounds directly, not through float32): float32 arithmetic rounds
    differently on each CPU's kernels, so the stored bytes would depend on the machine.
    """
    import openslide
    import torch

    from helpers import trident
    from helpers.encoder import StainStatsEncoder

    with openslide.OpenSlide(str(paths.wsi(spec.name))) as slide, _one_torch_thread():
        trident.save_thumbnail(slide, paths.thumbnail_path(spec.name))
        tissue, downsample = trident.segment_tissue(slide)
        attrs = trident.coords_attributes(
            slide, spec.name, paths.coords_path(spec.name).parent, PATCH_SIZE, TARGET_MAG
        )
        coords_level0 = trident.patch_grid(
            tissue, downsample, slide.dimensions, attrs["patch_size_level0"]
        )
        trident.save_coords(paths.coords_path(spec.name), coords_level0, attrs)
        feats = trident.extract_features(
            slide,
            coords_level0,
            attrs,
            StainStatsEncoder(dtype=torch.float64),
            path=paths.wsi(spec.name),
        )
        trident.save_features(  # float16, as TRIDENT v0.3.0 writes them
            paths.features_path(spec.name),
            feats.astype(np.float16),
            coords_level0,
            attrs,
            DEMO_ENCODER,
        )


def _build_one(spec: SlideSpec, root: str, seed: int) -> dict[str, dict]:
    """Paint and process one slide; return the records of the files written (see
    :func:`file_record`), keyed by their path relative to ``root``."""
    paths = CohortPaths(Path(root))
    for p in paths.processed_files(spec):  # outputs of an older slide must not survive it
        p.unlink(missing_ok=True)
    make_slide(spec, paths, seed)
    process_slide(spec, paths)
    return {
        p.relative_to(paths.root).as_posix(): file_record(p)
        for p in paths.slide_files(spec) + paths.processed_files(spec)
    }


# ---------------------------------------------------------------------------------------
# the manifest: what the demo wrote, with sizes and content hashes
# ---------------------------------------------------------------------------------------
def file_record(path: Path) -> dict:
    """``{"size", "sha256", "mtime_ns"}`` of a file, as the manifest stores it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    st = path.stat()
    return {"size": st.st_size, "sha256": digest.hexdigest(), "mtime_ns": st.st_mtime_ns}


def check_file(path: Path) -> str | None:
    """A cheap open-and-check of a cohort file: ``None`` when it reads, else what is wrong.

    TIFF: every page's tiles lie inside the file (a truncated pyramid fails); h5: every
    dataset reads; XML: parses; JPEG: starts and ends with its markers; CSV: has rows.
    """
    import h5py

    try:
        size = path.stat().st_size
        if path.suffix == ".tif":
            with tifffile.TiffFile(path) as tif:
                if not tif.pages:
                    return "no image in the TIFF"
                for page in tif.pages:
                    ends = [
                        o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)
                    ]
                    if not ends or max(ends) > size or 0 in page.databytecounts:
                        return "the TIFF is truncated"
        elif path.suffix == ".h5":
            with h5py.File(path, "r") as f:
                for key in f:
                    f[key][()]
        elif path.suffix == ".xml":
            ElementTree.parse(path)
        elif path.suffix == ".jpg":
            data = path.read_bytes()
            if data[:2] != b"\xff\xd8" or data.rstrip(b"\0")[-2:] != b"\xff\xd9":
                return "the JPEG is truncated"
        elif path.suffix == ".csv" and pd.read_csv(path).empty:
            return "the CSV has no rows"
    except Exception as exc:  # noqa: BLE001 - any failure to read is "damaged"
        return f"cannot be read ({type(exc).__name__}: {exc})"
    return None


def _load_json(path: Path) -> dict | None:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _save_json(path: Path, info: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(info, indent=1))


@dataclass
class _Found:
    """What :func:`_inspect` found in ``--out``."""

    kind: str  # "new" (absent or empty), "ours" (marker), "legacy" (older helpers.demo)
    marker: dict | None = None
    manifest: dict | None = None


def _is_partial_marker(path: Path) -> bool:
    """The temporary file :func:`_save_json` writes the marker to before renaming it."""
    stem, suffix = Path(MARKER).stem, Path(MARKER).suffix
    return path.name.startswith(f".{stem}.partial-") and path.name.endswith(suffix)


def _inspect(root: Path) -> _Found:
    """Recognise ``root`` without writing anything; raise :class:`CohortError` if it is
    neither absent, empty, nor a demo cohort (ours, or one made by an older helpers.demo)."""
    if root.exists() and not root.is_dir():
        raise CohortError(f"--out {root} is a file, not a folder.")
    if not root.exists():
        return _Found("new")
    entries = sorted(root.iterdir())
    if all(_is_partial_marker(p) for p in entries):
        # empty, or another process is writing its marker right now (it holds the lock;
        # the caller waits for it and looks again)
        return _Found("new")
    marker = _load_json(root / MARKER) if (root / MARKER).exists() else None
    if (root / MARKER).exists():
        if marker is None or marker.get("made_by") != "helpers.demo":
            raise CohortError(
                f"{root / MARKER} is damaged; delete {root} by hand and build the cohort again."
            )
        return _Found("ours", marker, _load_json(root / MANIFEST))
    # helpers.demo before the marker: cohort.json (complete) or .cohort-in-progress.json,
    # and nothing but the names it writes
    stamp = _load_json(root / MANIFEST) or _load_json(root / LEGACY_IN_PROGRESS)
    names = {p.name for p in entries}
    if (
        stamp is not None
        and "format" not in stamp
        and {"seed", "version", "sizes"} <= set(stamp)
        and names <= set(MANAGED) | {*CSV_FILES, MANIFEST, LEGACY_IN_PROGRESS, "models"}
    ):
        return _Found("legacy", None, stamp)
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:8])
    more = f" and {len(entries) - 8} more" if len(entries) > 8 else ""
    raise CohortError(
        f"{root} is not empty and is not a demo cohort (it has no {MARKER}); found: "
        f"{shown}{more}. Nothing was changed: choose an empty or new folder for --out."
    )


def _expected_files(paths: CohortPaths, specs: list[SlideSpec]) -> list[str]:
    files = [paths.root / n for n in CSV_FILES]
    for s in specs:
        files += paths.slide_files(s) + paths.processed_files(s) + [paths.patch_labels_path(s.name)]
    return [p.relative_to(paths.root).as_posix() for p in files]


def verify_files(root: Path, records: dict[str, dict], full: bool = False) -> dict[str, str]:
    """Files of ``records`` that are missing or changed: ``{relative path: what is wrong}``.

    Fast path: size and modification time equal to the record. A file whose time differs is
    hashed (``full=True``: every file is) and passes when its content hash is the record's
    (then the record takes the new time).
    """
    damaged = {}
    for rel, rec in records.items():
        path = root / rel
        try:
            st = path.stat()
        except OSError:
            damaged[rel] = "missing"
            continue
        if st.st_size != rec["size"]:
            damaged[rel] = f"{st.st_size} bytes instead of {rec['size']}"
        elif full or st.st_mtime_ns != rec["mtime_ns"]:
            now = file_record(path)
            if now["sha256"] != rec["sha256"]:
                damaged[rel] = "content changed (sha256 differs from the manifest)"
            else:
                rec["mtime_ns"] = now["mtime_ns"]
    return damaged


def _writable(root: Path) -> bool:
    probe = root
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK | os.X_OK)


def _same_plan(info: dict | None, seed: int, sizes: tuple) -> bool:
    return (
        info is not None
        and info.get("seed") == seed
        and info.get("sizes") == [list(x) for x in sizes]
        and info.get("version") == COHORT_VERSION
    )


def _complete_and_valid(
    root: Path, found: _Found, seed: int, sizes: tuple, lazy: bool = False
) -> dict | None:
    """The manifest when ``root`` holds this complete cohort with every file intact (with
    ``lazy``, slides still to be painted on demand count as complete)."""
    m = found.manifest
    if found.kind != "ours" or not _same_plan(m, seed, sizes) or not m.get("complete"):
        return None
    if m.get("pending") and not lazy:
        return None
    records = m.get("files", {})
    specs = plan_cohort(seed, sizes)
    paths = CohortPaths(root)
    later = set()
    for s in specs:
        if s.name in m.get("pending", []):
            files = paths.slide_files(s) + [paths.thumbnail_path(s.name)]
            later |= {p.relative_to(root).as_posix() for p in files}
    if set(_expected_files(paths, specs)) - set(records) - later:
        return None
    before = json.dumps(records, sort_keys=True)
    if verify_files(root, records):
        return None
    if json.dumps(records, sort_keys=True) != before and _writable(root):
        try:  # remember the new modification times so the next check is fast again
            _save_json(root / MANIFEST, m)
        except OSError:
            pass
    return m


# ---------------------------------------------------------------------------------------
# worker processes: plain subprocesses that import helpers.demo, not the caller's script
# ---------------------------------------------------------------------------------------
def _worker_main() -> None:
    """Loop of a build worker: one JSON task per stdin line, one JSON result per line.

    The worker ignores Ctrl-C (the parent stops it), turns SIGTERM into a normal exit (so
    half-written temporary files are removed) and exits when its parent dies.
    """
    import signal
    import threading
    import traceback

    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # anything printed goes to stderr, not into the answers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parent = os.getppid()

    def watch_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
        os._exit(1)

    threading.Thread(target=watch_parent, daemon=True).start()
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    for line in sys.stdin:
        task = json.loads(line)
        spec = SlideSpec(**task["spec"])
        try:
            answer = {"name": spec.name, "files": _build_one(spec, task["root"], task["seed"])}
        except OSError as exc:  # a full disk, a read-only folder: raised again by the parent
            answer = {"name": spec.name, "error": traceback.format_exc()}
            answer["oserror"] = [exc.errno, exc.strerror or str(exc), exc.filename]
        except Exception:  # noqa: BLE001 - reported by the parent
            answer = {"name": spec.name, "error": traceback.format_exc()}
        out.write(json.dumps(answer) + "\n")
        out.flush()


class _WorkerPool:
    """``n`` worker subprocesses fed from a queue; :meth:`close` stops them at once."""

    def __init__(self) -> None:
        import queue

        self.procs: list = []
        self.tasks: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()

    def start(self, n: int, tasks: list[dict]) -> None:
        """Start ``n`` workers on ``tasks`` (Ctrl-C waits until they are all started, so
        :meth:`close` always knows every one of them)."""
        import signal
        import subprocess
        import threading

        package_root = str(Path(__file__).resolve().parents[1])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [package_root] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
        )
        for task in tasks:
            self.tasks.put(task)
        main = threading.current_thread() is threading.main_thread()
        block = main and hasattr(signal, "pthread_sigmask")
        if block:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            for _ in range(n):
                self.procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            "from helpers.demo import _worker_main; _worker_main()",
                        ],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                        env=env,
                    )
                )
        finally:
            if block:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        for proc in self.procs:
            threading.Thread(target=self._feed, args=(proc,), daemon=True).start()

    def _feed(self, proc) -> None:
        import queue

        while True:
            try:
                task = self.tasks.get_nowait()
            except queue.Empty:
                return
            try:
                proc.stdin.write(json.dumps(task) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (OSError, ValueError):
                line = ""
            if not line:
                self.results.put({"name": task["spec"]["name"], "error": "the worker died"})
                return
            self.results.put(json.loads(line))

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.procs:
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except Exception:  # noqa: BLE001 - still alive: kill it
                proc.kill()
                proc.wait()
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass


def _raise_worker_error(answer: dict) -> None:
    """A worker's failure raised here: its ``OSError`` (a full disk) as the same
    ``OSError``, anything else as a :class:`CohortError` with the worker's traceback."""
    if "oserror" in answer:
        raise OSError(*answer["oserror"])
    if "error" in answer:
        raise CohortError(f"building {answer['name']} failed:\n{answer['error']}")


def _build_slides(todo: list[SlideSpec], root: Path, seed: int, workers: int, on_done) -> None:
    """Build ``todo``; ``on_done(name, records)`` runs in this process after each slide."""
    if workers == 1 or len(todo) <= 1:
        for s in todo:  # process_slide runs torch on one thread
            on_done(s.name, _build_one(s, str(root), seed))
        return
    import queue

    tasks = [{"spec": asdict(s), "root": str(root), "seed": seed} for s in todo]
    pool = _WorkerPool()
    try:
        pool.start(min(workers, len(todo)), tasks)
        for _ in todo:
            while True:
                try:  # a short timeout keeps Ctrl-C responsive
                    answer = pool.results.get(timeout=0.2)
                    break
                except queue.Empty:
                    continue
            _raise_worker_error(answer)
            on_done(answer["name"], answer["files"])
    finally:
        pool.close()


# ---------------------------------------------------------------------------------------
# the whole cohort
# ---------------------------------------------------------------------------------------
def _check_arguments(seed, workers, sizes) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise CohortError(f"seed must be a whole number, not {seed!r}")
    if seed < 0:
        raise CohortError(f"seed must be 0 or more, not {seed}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1
    ):
        raise CohortError(f"workers must be a whole number of 1 or more, not {workers!r}")
    try:
        ok = all(int(n) >= 0 for pair in sizes for n in pair) and len(sizes) == 2
        ok = ok and all(len(pair) == 2 for pair in sizes) and sum(map(sum, sizes)) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CohortError(f"sizes must be ((normal, tumour) train, test) counts, not {sizes!r}")


def _partial_files(root: Path) -> list[Path]:
    """Temporary files of :func:`helpers.fileio.atomic_path` left by a killed build."""
    found = [p for p in root.glob(".*.partial-*") if p.is_file()]
    for folder in (root / name for name in MANAGED):
        if folder.is_dir():
            found += [p for p in folder.rglob(".*.partial-*") if p.is_file()]
    return found


def _cached_weights(root: Path) -> list[Path]:
    """Weights that ``helpers.training`` cached beside this cohort (``models/<name>-<key>.pt``)."""
    folder = root / "models"
    if not folder.is_dir():
        return []
    ours = re.compile(r"^(.+-[0-9a-f]{12}\.pt|\..+\.partial-\d+\.pt)$")
    return [p for p in folder.iterdir() if p.is_file() and ours.match(p.name)]


def _build_outputs(root: Path, manifest: dict) -> set[str]:
    """Every path (relative to ``root``) a build of the manifest's plan writes; empty when
    the manifest names no readable plan."""
    try:
        specs = plan_cohort(int(manifest["seed"]), tuple(map(tuple, manifest["sizes"])))
    except (KeyError, TypeError, ValueError):
        return set()
    paths = CohortPaths(root)
    files = [paths.thumbnail_path(s.name) for s in specs]
    return set(_expected_files(paths, specs)) | {p.relative_to(root).as_posix() for p in files}


def _removable(root: Path, records, allowed: set[str]) -> list[str]:
    """The entries of ``records`` that may be deleted: files the build writes (``allowed``)
    that lie inside ``root`` once links are resolved. Any other entry (``../victim``, an
    absolute path, a reader's file named in a damaged or edited manifest) is left alone,
    with a warning."""
    import warnings

    inside, refused = [], []
    top = root.resolve()
    for rel in records:
        path = root / str(rel)
        ok = isinstance(rel, str) and rel in allowed and path.resolve().is_relative_to(top)
        (inside if ok else refused).append(rel)
    if refused:
        warnings.warn(
            f"{root / MANIFEST} lists {len(refused)} path(s) the demo never writes there "
            f"({', '.join(map(str, refused[:5]))}): left alone.",
            stacklevel=3,
        )
    return inside


def _remove_listed(root: Path, records: dict[str, dict], manifest: dict | None = None) -> None:
    """Delete the files the manifest lists that the build writes inside ``root`` (and the
    folders they leave empty), the cached weights of this cohort, and nothing else
    (``manifest``: the plan they were made for; default: each record is one)."""
    allowed = _build_outputs(root, manifest) if manifest is not None else set(records)
    records = _removable(root, records, allowed)
    for rel in records:
        (root / rel).unlink(missing_ok=True)
    for path in _cached_weights(root) + _partial_files(root):
        path.unlink(missing_ok=True)
    for folder in sorted(
        {(root / rel).parent for rel in records} | {root / "models"}, reverse=True
    ):
        while folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent


# ---------------------------------------------------------------------------------------
# fast start: the small h5 files from packed arrays, a slide's pixels when first asked for
# ---------------------------------------------------------------------------------------
PACKED = Path(__file__).with_name("demo_h5.npz")


class _SlideStub:
    """What :func:`helpers.trident.coords_attributes` reads of a slide: power and size."""

    def __init__(self, width: int, height: int) -> None:
        import openslide

        self.dimensions = (int(width), int(height))
        self.properties = {openslide.PROPERTY_NAME_OBJECTIVE_POWER: str(LEVEL0_MAG)}


def pack_arrays(root: str | os.PathLike, out: str | os.PathLike = PACKED) -> Path:
    """Save the arrays of a complete cohort's h5 files (coords, features, patch labels) in
    one ``.npz``: what :func:`make_cohort` with ``lazy=True`` writes the h5 files from."""
    import h5py

    root, out = Path(root), Path(out)
    m = _load_json(root / MANIFEST) or {}
    if not m.get("complete") or m.get("pending"):
        raise CohortError(f"{root} holds no complete demo cohort to pack.")
    paths = CohortPaths(root)
    arrays, sizes = {}, {}
    for s in plan_cohort(m["seed"], tuple(map(tuple, m["sizes"]))):
        with h5py.File(paths.features_path(s.name), "r") as f:
            arrays[f"{s.name}/features"] = f["features"][:]
            arrays[f"{s.name}/coords"] = f["coords"][:]
            attrs = f["coords"].attrs
            sizes[s.name] = [int(attrs["level0_width"]), int(attrs["level0_height"])]
        with h5py.File(paths.patch_labels_path(s.name), "r") as f:
            arrays[f"{s.name}/labels"] = f["patch_labels"][:]
            arrays[f"{s.name}/fractions"] = f["tumor_fraction"][:]
    meta = {k: m[k] for k in ("seed", "version", "sizes")} | {"level0_size": sizes}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(out) as tmp:
        np.savez_compressed(tmp, **arrays)
    return out


def _unpack(root: Path, specs: list[SlideSpec], packed: Path) -> dict[str, dict]:
    """Write the h5 files of ``specs`` from ``packed`` arrays exactly as a full build writes
    them; return their records."""
    from helpers import trident
    from helpers.formats import write_patch_labels

    paths = CohortPaths(root)
    records = {}
    with np.load(packed) as data:
        meta = json.loads(data["meta"].tobytes())
        for s in specs:
            coords_level0 = data[f"{s.name}/coords"]
            attrs = trident.coords_attributes(
                _SlideStub(*meta["level0_size"][s.name]),
                s.name,
                paths.coords_path(s.name).parent,
                PATCH_SIZE,
                TARGET_MAG,
            )
            trident.save_coords(paths.coords_path(s.name), coords_level0, attrs)
            feats = data[f"{s.name}/features"]
            trident.save_features(
                paths.features_path(s.name), feats, coords_level0, attrs, DEMO_ENCODER
            )
            write_patch_labels(
                paths.patch_labels_path(s.name),
                data[f"{s.name}/labels"],
                fractions=data[f"{s.name}/fractions"],
                attrs={
                    "threshold": 0.5,
                    "source": "mask" if s.label else "none",
                    "patch_size_level0": PATCH_SIZE_LEVEL0,
                },
            )
            for p in (
                paths.coords_path(s.name),
                paths.features_path(s.name),
                paths.patch_labels_path(s.name),
            ):
                records[p.relative_to(root).as_posix()] = file_record(p)
    return records


def _packed_matches(packed: Path, seed: int, sizes: tuple) -> bool:
    if not packed.is_file():
        return False
    try:
        with np.load(packed) as data:
            meta = json.loads(data["meta"].tobytes())
    except (OSError, ValueError, KeyError):
        return False
    return _same_plan(meta, seed, sizes)


def ensure_slide(root: str | os.PathLike, name: str) -> bool:
    """Paint slide ``name`` of a cohort made with ``lazy=True`` if it is not made yet: its
    TIFF pyramid, mask, XML and thumbnail, from the same seed as a full build (so the same
    pixels the shipped features were computed from). Returns ``True`` when ``name`` belongs
    to such a cohort's pending slides (now made)."""
    import openslide

    from helpers import trident

    root = Path(root)
    m = _load_json(root / MANIFEST)
    if not m or name not in m.get("pending", []):
        return False
    if not _writable(root):
        raise CohortError(f"{root} is not writable: cannot make the slide {name}.")
    with file_lock(_lock_path(root)):
        m = _load_json(root / MANIFEST) or {}
        if name not in m.get("pending", []):
            return True
        specs = plan_cohort(m["seed"], tuple(map(tuple, m["sizes"])))
        spec = next(s for s in specs if s.name == name)
        paths = CohortPaths(root)
        make_slide(spec, paths, m["seed"])
        with openslide.OpenSlide(str(paths.wsi(name))) as slide:
            trident.save_thumbnail(slide, paths.thumbnail_path(name))
        for p in paths.slide_files(spec) + [paths.thumbnail_path(name)]:
            m["files"][p.relative_to(root).as_posix()] = file_record(p)
        m["pending"].remove(name)
        _save_json(root / MANIFEST, m)
    return True


def _lock_path(root: Path) -> Path:
    if os.access(root.parent, os.W_OK):
        return root.parent / f".{root.name}.lock"
    return root / ".lock"  # pragma: no cover - a writable folder in a read-only one


def default_out() -> Path:
    """Where the chapters look for the demo cohort (``helpers.settings.demo_dir()``)."""
    from helpers.settings import demo_dir

    return demo_dir()


def make_cohort(
    out: str | os.PathLike | None = None,
    seed: int = 0,
    force: bool = False,
    workers: int | None = None,
    quiet: bool = False,
    sizes: tuple = DEFAULT_SIZES,
    lazy: bool = False,
) -> Path:
    """Make (or finish, repair, or just find) the demo cohort in ``out``; return its folder.

    ``lazy=True`` (what ``helpers.settings.setup()`` asks for) writes only what the h5-only
    chapters read, from arrays shipped with the package (:data:`PACKED`, made by
    :func:`pack_arrays`), in a few seconds; each slide's TIFF, mask, XML and thumbnail are
    then made when first asked for (:func:`ensure_slide`). A full build (``lazy=False``,
    the command line) makes every file, and finishes a lazy cohort.

    ``out`` defaults to where the chapters look (``MIL_BOOK_DEMO_DIR``, else ``data/demo`` of
    the checkout). ``sizes`` = ((normal, tumour) slides in train, in test); the default is
    the book's cohort. The demo writes only into an empty or new folder, or one that carries
    its marker; ``force`` deletes what the manifest lists (and the weights cached beside it)
    and builds again.
    """
    _check_arguments(seed, workers, sizes)
    seed, sizes = int(seed), tuple(tuple(int(n) for n in pair) for pair in sizes)
    root = Path(out if out is not None else default_out()).expanduser().resolve()
    found = _inspect(root)  # a foreign folder fails here, before anything is written
    if not force and _complete_and_valid(root, found, seed, sizes, lazy):
        if not quiet:
            print(f"Demo cohort already complete in {root} (seed {seed}).")
        return root
    if not _writable(root):
        damaged = ""
        if found.kind == "ours" and _same_plan(found.manifest, seed, sizes):
            bad = verify_files(root, dict(found.manifest.get("files", {})))
            damaged = f" Damaged or missing: {', '.join(sorted(bad)[:8]) or 'none'}."
        elif found.kind == "legacy" and _same_plan(found.manifest, seed, sizes):
            specs = plan_cohort(seed, sizes)
            bad = [r for r in _expected_files(CohortPaths(root), specs) if check_file(root / r)]
            if not bad:
                return root  # an older helpers.demo made it, complete, on read-only storage
            damaged = f" Damaged or missing: {', '.join(bad[:8])}."
        raise CohortError(
            f"--out {root} is not writable and holds no complete demo cohort (seed {seed})."
            + damaged
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    # two notebooks starting at once on a fresh machine: the second waits, then finds it done
    with file_lock(_lock_path(root)):
        return _make_cohort(root, seed, force, workers, quiet, sizes, lazy)


def _make_cohort(
    root: Path,
    seed: int,
    force: bool,
    workers: int | None,
    quiet: bool,
    sizes: tuple,
    lazy: bool = False,
    packed: Path | None = None,
) -> Path:
    found = _inspect(root)
    if not force and _complete_and_valid(root, found, seed, sizes, lazy):
        if not quiet:
            print(f"Demo cohort already complete in {root} (seed {seed}).")
        return root
    specs = plan_cohort(seed, sizes)
    plan = {"seed": seed, "version": COHORT_VERSION, "sizes": [list(x) for x in sizes]}
    say = (lambda *a: None) if quiet else print
    packed = packed or PACKED
    unfinished_lazy = (
        found.kind == "ours"
        and not force
        and bool((found.manifest or {}).get("pending"))
        and not (found.manifest or {}).get("complete")
        and _same_plan(found.manifest, seed, sizes)
    )
    if (found.kind == "new" or unfinished_lazy) and lazy and _packed_matches(packed, seed, sizes):
        return _make_lazy(root, specs, plan, packed, say)
    verb, records = _take_over(root, found, plan, (seed, sizes), force, say)
    for path in _partial_files(root):  # left by a killed build (no build is running: lock)
        path.unlink()
    manifest = {**plan, "format": FORMAT, "encoder": DEMO_ENCODER, "complete": False}
    manifest["slides"] = [asdict(s) for s in specs]
    manifest["files"] = records
    _save_json(root / MANIFEST, manifest)
    say(f"{verb} demo cohort in {root} (seed {seed}, {len(specs)} slides)...")
    t0 = time.perf_counter()
    n_workers = workers or max(1, min(os.cpu_count() or 1, 4))
    _build_missing(root, specs, manifest, seed, n_workers, quiet)
    _write_tables_and_labels(root, specs, records, quiet)
    manifest["complete"] = True
    manifest["pending"] = []
    _save_json(root / MANIFEST, manifest)
    if not quiet:
        _print_summary(root, cohort_summary(root), time.perf_counter() - t0)
    return root


def _save_marker(root: Path, plan: dict) -> None:
    _save_json(root / MARKER, {"made_by": "helpers.demo", "note": MARKER_NOTE, **plan})


def _make_lazy(root: Path, specs: list[SlideSpec], plan: dict, packed: Path, say) -> Path:
    """The fast start: h5 files from the shipped arrays, the CSVs; pixels made on demand."""
    root.mkdir(parents=True, exist_ok=True)
    _save_marker(root, plan)
    t0 = time.perf_counter()
    records: dict[str, dict] = {}
    manifest = {**plan, "format": FORMAT, "encoder": DEMO_ENCODER, "complete": False}
    manifest |= {"slides": [asdict(s) for s in specs], "files": records}
    manifest["pending"] = [s.name for s in specs]
    _save_json(root / MANIFEST, manifest)
    records.update(_unpack(root, specs, packed))
    for name, subset in _csv_tables(specs):
        _write_csv(root / name, subset)
        records[name] = file_record(root / name)
    manifest["complete"] = True
    _save_json(root / MANIFEST, manifest)
    say(
        f"Demo cohort's features and labels written to {root} in "
        f"{time.perf_counter() - t0:.1f} s; each slide's pixels are made when first opened "
        "(python -m helpers.demo makes them all)."
    )
    return root


def _take_over(
    root: Path, found: _Found, plan: dict, seed_sizes: tuple, force: bool, say
) -> tuple[str, dict]:
    """Mark ``root`` as ours and keep the files that can stay: ``(verb, records)``."""
    seed, sizes = seed_sizes
    if found.kind == "new":
        root.mkdir(parents=True, exist_ok=True)
        _save_marker(root, plan)
        return "Making the", {}
    if found.kind == "legacy":
        return _adopt_legacy(root, found.manifest, plan, seed_sizes, force)
    manifest = found.manifest or {}
    info = manifest or found.marker
    records: dict[str, dict] = {}
    if force or info.get("version") != COHORT_VERSION:
        _remove_listed(root, manifest.get("files", {}), manifest)
        verb = "Making the"
    elif not _same_plan(info, seed, sizes):
        raise CohortError(_other_seed_message(root, info, seed))
    else:
        records = dict(manifest.get("files", {}))
        bad = verify_files(root, records)
        for rel, why in sorted(bad.items()):
            say(f"{rel}: {why}; it will be made again.")
            records.pop(rel)
        verb = "Repairing the" if bad else "Finishing the interrupted"
    _save_marker(root, plan)
    return verb, records


def _adopt_legacy(
    root: Path, old: dict, plan: dict, seed_sizes: tuple, force: bool
) -> tuple[str, dict]:
    """A cohort made by helpers.demo before the marker: adopt the files that read, rebuild
    the rest (``(verb, records)``)."""
    seed, sizes = seed_sizes
    _save_marker(root, plan)
    old_specs = plan_cohort(old["seed"], tuple(map(tuple, old["sizes"])))
    expected = _expected_files(CohortPaths(root), old_specs)
    records: dict[str, dict] = {}
    if _same_plan(old, seed, sizes) and not force:
        for rel in expected:
            if (root / rel).is_file() and check_file(root / rel) is None:
                records[rel] = file_record(root / rel)
            else:
                (root / rel).unlink(missing_ok=True)
        verb = "Upgrading the"
    elif force or old.get("version") != COHORT_VERSION:
        _remove_listed(root, {rel: {} for rel in expected})
        verb = "Making the"
    else:
        (root / MARKER).unlink()
        raise CohortError(_other_seed_message(root, old, seed))
    (root / LEGACY_IN_PROGRESS).unlink(missing_ok=True)
    return verb, records


def _build_missing(
    root: Path, specs: list[SlideSpec], manifest: dict, seed: int, n_workers: int, quiet: bool
) -> None:
    """Build every slide whose files are not all in ``manifest["files"]``, saving the
    manifest after each (a progress bar unless the build is quiet)."""
    paths, records = CohortPaths(root), manifest["files"]
    todo = [
        s
        for s in specs
        if not all(
            p.relative_to(root).as_posix() in records
            for p in paths.slide_files(s) + paths.processed_files(s)
        )
    ]
    bar = tqdm(
        total=len(specs), initial=len(specs) - len(todo), desc="slides", unit="slide", disable=quiet
    )
    finished: list[str] = []

    def on_done(name: str, files: dict) -> None:
        records.update(files)
        finished.append(name)
        _save_json(root / MANIFEST, manifest)
        bar.update()

    try:
        _build_slides(todo, root, seed, n_workers, on_done)
    except KeyboardInterrupt:
        bar.close()
        done = len(specs) - len(todo) + len(finished)
        print(
            f"\nInterrupted: {done} of {len(specs)} slides are done and kept in {root}; "
            "run the same command again to finish.",
            file=sys.stderr,
        )
        raise
    bar.close()


def _write_tables_and_labels(
    root: Path, specs: list[SlideSpec], records: dict, quiet: bool
) -> None:
    """The label CSVs, then ``patch_labels/`` by :func:`helpers.labels.label_folder`."""
    from helpers.labels import label_folder

    paths = CohortPaths(root)
    for name, subset in _csv_tables(specs):
        _write_csv(root / name, subset)
        records[name] = file_record(root / name)
    label_folder(
        csv_path=root / "wsi_labels.csv",
        coords_dir=paths.coords_dir,
        save_dir=paths.patch_labels_dir,
        masks_dir=root / MASKS_DIR,
        patch_size=PATCH_SIZE_LEVEL0,
        progress=not quiet,
    )
    for s in specs:
        path = paths.patch_labels_path(s.name)
        records[path.relative_to(root).as_posix()] = file_record(path)


MARKER_NOTE = (
    "This folder is a demo cohort of helpers.demo (python -m helpers.demo). It writes, "
    "replaces and deletes only the files cohort.json lists."
)


def _other_seed_message(root: Path, info: dict, seed: int) -> str:
    return (
        f"{root} holds a demo cohort made with seed {info.get('seed')} (version "
        f"{info.get('version')}, sizes {info.get('sizes')}); pass --force to rebuild it with "
        f"seed {seed}."
    )


def _csv_tables(specs: list[SlideSpec]) -> list[tuple[str, list[SlideSpec]]]:
    return [
        ("wsi_labels.csv", specs),
        ("train.csv", [s for s in specs if s.split == "train"]),
        ("test.csv", [s for s in specs if s.split == "test"]),
    ]


def _write_csv(path: Path, specs: list[SlideSpec]) -> None:
    table = pd.DataFrame(
        {"wsi_name": [s.name for s in specs], "wsi_label": [s.label for s in specs]}
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def cohort_summary(root: str | os.PathLike) -> pd.DataFrame:
    """One row per slide: split, label, kind, bag size and tumour patches."""
    import h5py

    root = Path(root)
    paths = CohortPaths(root)
    info = json.loads((root / MANIFEST).read_text()) if (root / MANIFEST).exists() else {}
    rows = []
    for s in plan_cohort(info.get("seed", 0), info.get("sizes", DEFAULT_SIZES)):
        with h5py.File(paths.patch_labels_path(s.name), "r") as f:
            labels = f["patch_labels"][:]
        rows.append({**asdict(s), "n_patches": len(labels), "n_tumor_patches": int(labels.sum())})
    table = pd.DataFrame(rows).drop(columns="index")
    table["tumor_fraction"] = table["n_tumor_patches"] / table["n_patches"]
    return table


def _print_summary(root: Path, table: pd.DataFrame, seconds: float) -> None:
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"\nDemo cohort ready in {root} ({seconds:.0f} s, {size / 1e6:.0f} MB):")
    for sub in MANAGED:
        print(f"  {root / sub}")
    print(
        f"{len(table)} slides ({(table.label == 1).sum()} tumour: "
        f"{(table.kind == 'macro').sum()} macro, {(table.kind == 'micro').sum()} micro, "
        f"{(table.kind == 'itc').sum()} with isolated tumour cells only); "
        f"bag size mean {table.n_patches.mean():.0f} (min {table.n_patches.min()}, "
        f"max {table.n_patches.max()})"
    )
    by_kind = table.groupby("kind")["tumor_fraction"].agg(["mean", "min", "max"])
    print("tumour-patch fraction by kind:\n" + by_kind.round(3).to_string())


def ensure_cohort(
    out: str | os.PathLike | None = None, seed: int = 0, quiet: bool = False, lazy: bool = False
) -> Path:
    """Make the demo cohort in ``out`` unless it is already complete and intact (then return
    at once: sizes and times checked against the manifest; see :func:`verify_files`).
    ``lazy``: see :func:`make_cohort`."""
    return make_cohort(out, seed=seed, quiet=quiet, lazy=lazy)


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be a whole number, not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"--seed must be 0 or more, not {value}")
    return value


def _workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"--workers must be a whole number >= 1, not {text!r}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: where the chapters look: $MIL_BOOK_DEMO_DIR, else "
        f"{default_out()})",
    )
    parser.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="delete the files this cohort's manifest lists (and the weights cached beside it) "
        "and build again",
    )
    parser.add_argument("--workers", type=_workers, default=None, help="parallel processes")
    parser.add_argument(
        "--pack",
        action="store_true",
        help=f"after the build, save its h5 arrays to {PACKED.name} (the fast start's data)",
    )
    args = parser.parse_args(argv)
    try:
        root = make_cohort(args.out, seed=args.seed, force=args.force, workers=args.workers)
        if args.pack:
            print(f"packed {pack_arrays(root)}")
    except CohortError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as err:  # a full disk (also inside helpers.labels' writes)
        if not isinstance(err, OSError) and not isinstance(err.__cause__, OSError):
            raise
        print(f"error: {_write_error_message(err, args.out)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


def _write_error_message(err: Exception, out) -> str:
    """What a failed write (a full disk, most often) means for the cohort: every file is
    written to a temporary name and renamed, so nothing half-written is left."""
    root = Path(out if out is not None else default_out()).expanduser()
    return (
        f"{err}\nNothing half-written is left in {root}: each file is written whole or not at "
        "all, and the slides finished so far are kept. Free some space (the full cohort "
        "takes about 1.1 GB) or choose another --out, then run the same command again to "
        "finish."
    )


if __name__ == "__main__":
    sys.exit(main())
