"""The demo cohort: CAMELYON16 in miniature, made locally and deterministically.

``python -m helpers.demo [--out DIR] [--seed N] [--force]`` writes (default ``DIR = data/demo``)::

    DIR/wsis/<name>.tif                 pyramidal tiled-JPEG TIFF, Aperio-style (40x, 0.25 mpp)
    DIR/annotations/<name>.xml          ASAP XML tumour polygons (tumour slides), level-0 px
    DIR/masks/<name>_mask.tif           pyramidal mask: 0 background / 1 tissue / 2 tumour
    DIR/wsi_labels.csv, train.csv, test.csv          columns wsi_name,wsi_label
    DIR/trident_processed/thumbnails/<name>.jpg
    DIR/trident_processed/20x_512px_0px_overlap/patches/<name>_patches.h5
    DIR/trident_processed/20x_512px_0px_overlap/features_demo_stats/<name>.h5
    DIR/trident_processed/20x_512px_0px_overlap/patch_labels/<name>.h5

50 slides (train: 18 ``normal_NNN`` + 12 ``tumor_NNN``; test: 20 ``test_NNN``, 8 of them
tumour). Half of the tumour slides are micro-metastases (one small lesion covering a few
patches), the rest macro-metastases. The slides are painted by :mod:`helpers.synth`; the h5
files are computed from their pixels by :mod:`helpers.trident` and :mod:`helpers.encoder`,
and the patch labels from the masks by :mod:`helpers.labels`, exactly as for real slides.

Every file is written atomically; an interrupted run is finished by the next one, and a
complete cohort is recognised in a fraction of a second.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np
import pandas as pd
import tifffile
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from helpers import synth
from helpers.fileio import atomic_path, file_lock

COHORT_VERSION = 2
ENCODER_NAME = "demo_stats"
PATCH_DIR = "20x_512px_0px_overlap"
PATCH_SIZE, TARGET_MAG, LEVEL0_MAG, MPP = 512, 20.0, 40, 0.25
PATCH_SIZE_LEVEL0 = int(PATCH_SIZE * LEVEL0_MAG // TARGET_MAG)  # 1024
N_LEVELS = 7  # downsamples 1 .. 64
MANIFEST, IN_PROGRESS = "cohort.json", ".cohort-in-progress.json"
MANAGED = ("wsis", "masks", "annotations", "trident_processed")
MANAGED_FILES = ("wsi_labels.csv", "train.csv", "test.csv", MANIFEST, IN_PROGRESS)


class CohortError(RuntimeError):
    """Bad ``--out`` folder or a cohort that cannot be resumed."""


@dataclass(frozen=True)
class SlideSpec:
    """What one demo slide is: its name, split, label and kind of metastasis."""

    index: int
    name: str
    split: str  # "train" or "test"
    label: int  # 0 normal, 1 tumour
    kind: str  # "normal", "macro" or "micro"


DEFAULT_SIZES = ((18, 12), (12, 8))  # (normal, tumour) slides in train and in test


def plan_cohort(seed: int, sizes: tuple = DEFAULT_SIZES) -> list[SlideSpec]:
    """The slides, deterministic for ``seed``; ``sizes``: ((normal, tumour) train, test)."""
    n_train, n_test = sizes
    rng = np.random.default_rng([seed, 0])
    specs: list[SlideSpec] = []
    for i in range(n_train[0]):
        specs.append(SlideSpec(len(specs), f"normal_{i + 1:03d}", "train", 0, "normal"))
    for i in range(n_train[1]):
        kind = "macro" if i % 2 == 0 else "micro"
        specs.append(SlideSpec(len(specs), f"tumor_{i + 1:03d}", "train", 1, kind))
    test_labels = rng.permutation([0] * n_test[0] + [1] * n_test[1])
    n_tumor = 0
    for i, label in enumerate(test_labels):
        kind = "normal"
        if label:
            kind = "macro" if n_tumor % 2 == 0 else "micro"
            n_tumor += 1
        specs.append(SlideSpec(len(specs), f"test_{i + 1:03d}", "test", int(label), kind))
    return specs


# ---------------------------------------------------------------------------------------
# paths
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CohortPaths:
    root: Path

    @property
    def job_dir(self) -> Path:
        return self.root / "trident_processed"

    @property
    def trident_dir(self) -> Path:
        return self.job_dir / PATCH_DIR

    def wsi(self, name: str) -> Path:
        return self.root / "wsis" / f"{name}.tif"

    def mask(self, name: str) -> Path:
        return self.root / "masks" / f"{name}_mask.tif"

    def xml(self, name: str) -> Path:
        return self.root / "annotations" / f"{name}.xml"

    def thumbnail(self, name: str) -> Path:
        return self.job_dir / "thumbnails" / f"{name}.jpg"

    def coords(self, name: str) -> Path:
        return self.trident_dir / "patches" / f"{name}_patches.h5"

    def features(self, name: str) -> Path:
        return self.trident_dir / f"features_{ENCODER_NAME}" / f"{name}.h5"

    def patch_labels(self, name: str) -> Path:
        return self.trident_dir / "patch_labels" / f"{name}.h5"

    def slide_files(self, spec: SlideSpec) -> list[Path]:
        files = [self.wsi(spec.name), self.mask(spec.name)]
        return files + ([self.xml(spec.name)] if spec.label else [])

    def processed_files(self, spec: SlideSpec) -> list[Path]:
        return [self.thumbnail(spec.name), self.coords(spec.name), self.features(spec.name)]


# ---------------------------------------------------------------------------------------
# one slide: paint, write the pyramid, the mask and the XML
# ---------------------------------------------------------------------------------------
def _place_lesions(
    rng: np.random.Generator, spec: SlideSpec, tissue: np.ndarray
) -> list[np.ndarray]:
    """Tumour polygons (level-0 x, y) well inside the tissue; micro lesions sit on a grid cell."""
    if spec.kind == "normal":
        return []
    ds = synth.PAINT_DOWNSAMPLE
    depth = cv2.distanceTransform(tissue.astype(np.uint8), cv2.DIST_L2, 5)
    polygons: list[np.ndarray] = []
    n_lesions = rng.choice([1, 2], p=[0.6, 0.4]) if spec.kind == "macro" else 1
    for _ in range(n_lesions):
        for _attempt in range(200):
            radius = rng.uniform(2000, 3000) if spec.kind == "macro" else rng.uniform(480, 700)
            # macro lesions may reach the tissue border (the tumour is clipped to tissue)
            ok = np.argwhere(depth > (0.8 if spec.kind == "macro" else 1.25) * radius / ds)
            if len(ok) == 0:
                continue
            cy, cx = ok[rng.integers(len(ok))] * ds
            if spec.kind == "micro":  # centre on a grid cell so that 1-3 patches are tumour
                cell = PATCH_SIZE_LEVEL0
                cx = (cx // cell + 0.5) * cell + rng.uniform(-200, 200)
                cy = (cy // cell + 0.5) * cell + rng.uniform(-200, 200)
            poly = synth.lesion_polygon(rng, (float(cx), float(cy)), radius)
            if spec.kind == "micro" and _max_cell_fraction(poly) < 0.55:
                continue
            polygons.append(poly)
            # the next lesion goes elsewhere
            cv2.circle(depth, (int(cx / ds), int(cy / ds)), int(2.2 * radius / ds), 0.0, -1)
            break
    if not polygons:  # pragma: no cover - the sizes above always fit
        raise RuntimeError(f"{spec.name}: could not place a {spec.kind} lesion")
    return polygons


def _max_cell_fraction(poly: np.ndarray) -> float:
    """Largest share of one grid cell covered by ``poly`` (coarse raster, 16 level-0 px)."""
    s = 16
    x0, y0 = (poly.min(0) // PATCH_SIZE_LEVEL0) * PATCH_SIZE_LEVEL0
    x1, y1 = (poly.max(0) // PATCH_SIZE_LEVEL0 + 1) * PATCH_SIZE_LEVEL0
    img = np.zeros((int((y1 - y0) / s), int((x1 - x0) / s)), np.uint8)
    pts = np.round((poly - [x0, y0]) / s * 16).astype(np.int32)
    cv2.fillPoly(img, [pts], 1, shift=4)
    c = PATCH_SIZE_LEVEL0 // s
    cells = img.reshape(img.shape[0] // c, c, img.shape[1] // c, c).mean((1, 3))
    return float(cells.max())


def _outline(region: np.ndarray, scale: float) -> list[np.ndarray]:
    """Outer contours of a bool ``region`` as level-0 polygons (pixel centres times ``scale``)."""
    contours, _ = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [(c[:, 0, :].astype(np.float64) + 0.5) * scale for c in contours if len(c) >= 3]


def _rasterise(shape: tuple[int, int], polygons: list[np.ndarray], scale: float) -> np.ndarray:
    """Fill level-0 ``polygons`` into a uint8 image of ``shape`` at ``1/scale`` of level 0."""
    img = np.zeros(shape, np.uint8)
    for p in polygons:  # one call each: fillPoly would treat overlaps of a list as holes
        cv2.fillPoly(img, [np.round(p / scale * 16).astype(np.int32)], 1, shift=4)
    return img


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
    """The ImageDescription that makes openslide read a TIFF as Aperio: 40x, 0.25 um/px."""
    return (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"(256x256) JPEG/RGB Q=80|AppMag = {LEVEL0_MAG}|MPP = {MPP}"
    )


def write_asap_xml(path: Path, polygons: list[np.ndarray], group: str = "Tumor") -> None:
    """ASAP annotation XML, one ``Polygon`` per lesion, level-0 coordinates."""
    lines = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "\t<Annotations>"]
    for i, poly in enumerate(polygons):
        lines.append(
            f'\t\t<Annotation Name="Annotation {i}" Type="Polygon" '
            f'PartOfGroup={quoteattr(group)} Color="#F4FA58">'
        )
        lines.append("\t\t\t<Coordinates>")
        for j, (x, y) in enumerate(poly):
            lines.append(f'\t\t\t\t<Coordinate Order="{j}" X="{x:.2f}" Y="{y:.2f}" />')
        lines += ["\t\t\t</Coordinates>", "\t\t</Annotation>"]
    lines += [
        "\t</Annotations>",
        "\t<AnnotationGroups>",
        f'\t\t<Group Name={quoteattr(group)} PartOfGroup="None" Color="#ff0000">',
        "\t\t\t<Attributes />",
        "\t\t</Group>",
        "\t</AnnotationGroups>",
        "</ASAP_Annotations>",
    ]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def make_slide(spec: SlideSpec, paths: CohortPaths, seed: int) -> None:
    """Paint one slide and write its TIFF pyramid, mask pyramid and (tumour) XML."""
    rng = np.random.default_rng([seed, 1, spec.index])
    ds = synth.PAINT_DOWNSAMPLE
    width = int(rng.integers(9, 12)) * PATCH_SIZE_LEVEL0 + 64 * int(rng.integers(0, 12))
    height = int(rng.integers(7, 10)) * PATCH_SIZE_LEVEL0 + 64 * int(rng.integers(0, 12))
    shape = (height // ds, width // ds)
    tissue = synth.tissue_shape(rng, shape, margin=150)
    # the annotation follows the tissue edge: outline (lesion AND tissue); the texture, the
    # XML and the mask all come from that one outline
    lesions = _rasterise(shape, _place_lesions(rng, spec, tissue), ds).astype(bool) & tissue
    polygons = _outline(lesions, ds)
    tumor = _rasterise(shape, polygons, ds).astype(bool)
    stain = {
        "h": rng.uniform(0.85, 1.15),
        "e": rng.uniform(0.8, 1.2),
        "hue": rng.uniform(-0.08, 0.08),
        "stroma": rng.uniform(0.12, 0.45),
        "follicles": rng.uniform(1.0, 8.0),
    }
    painted = synth.paint_section(rng, tissue, tumor, stain)

    # slide pyramid: level 2 (ds 4) is the painting itself
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
    mask0[_rasterise((height, width), polygons, 1.0).astype(bool)] = 2
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
def process_slide(spec: SlideSpec, paths: CohortPaths) -> None:
    """Thumbnail, tissue segmentation, patch grid and features, from the slide's pixels."""
    import openslide

    from helpers import trident
    from helpers.encoder import StainStatsEncoder

    with openslide.OpenSlide(str(paths.wsi(spec.name))) as slide:
        trident.save_thumbnail(slide, paths.thumbnail(spec.name))
        tissue, downsample = trident.segment_tissue(slide)
        attrs = trident.coords_attributes(
            slide, spec.name, paths.coords(spec.name).parent, PATCH_SIZE, TARGET_MAG
        )
        coords = trident.patch_grid(
            tissue, downsample, slide.dimensions, attrs["patch_size_level0"]
        )
        trident.save_coords(paths.coords(spec.name), coords, attrs)
        feats = trident.extract_features(slide, coords, attrs, StainStatsEncoder())
        trident.save_features(paths.features(spec.name), feats, coords, attrs, ENCODER_NAME)


def _build_one(spec: SlideSpec, root: str, seed: int) -> str:
    """Worker: whatever of this slide is missing (each stage is all-or-nothing)."""
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    paths = CohortPaths(Path(root))
    if not all(p.exists() for p in paths.slide_files(spec)):
        make_slide(spec, paths, seed)
        for p in paths.processed_files(spec):  # stale outputs of an older slide
            p.unlink(missing_ok=True)
    if not all(p.exists() for p in paths.processed_files(spec)):
        process_slide(spec, paths)
    return spec.name


# ---------------------------------------------------------------------------------------
# the whole cohort
# ---------------------------------------------------------------------------------------
def _check_out_dir(root: Path, seed: int, sizes: tuple, force: bool) -> str:
    """Validate ``root``; return "complete", "resume" or "new". Raises :class:`CohortError`."""
    if root.exists() and not root.is_dir():
        raise CohortError(f"--out {root} is a file, not a folder.")
    probe = root
    while not probe.exists():
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        raise CohortError(f"--out {root}: {probe} is not writable.")
    if not root.exists():
        return "new"
    manifest, marker = root / MANIFEST, root / IN_PROGRESS
    for path, state in ((manifest, "complete"), (marker, "resume")):
        if path.exists():
            try:
                info = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError):
                info = {}
            same = info.get("seed") == seed and info.get("sizes") == [list(x) for x in sizes]
            if same and info.get("version") != COHORT_VERSION:
                return "new"  # made by an older helpers.demo: rebuild it
            if same or force:
                return state if same and not force else "new"
            raise CohortError(
                f"{root} holds a demo cohort made with seed {info.get('seed')} "
                f"(version {info.get('version')}, sizes {info.get('sizes')}); pass --force to "
                f"rebuild it with seed {seed}."
            )
    if any(root.iterdir()):
        ours = {p.name for p in root.iterdir()} <= set(MANAGED) | set(MANAGED_FILES)
        if not ours:
            raise CohortError(
                f"{root} is not empty and holds no demo cohort; choose an empty or new folder."
            )
        if not force:
            return "resume"
    return "new"


def _clear(root: Path) -> None:
    """Remove what this module writes (and nothing else)."""
    for name in MANAGED:
        shutil.rmtree(root / name, ignore_errors=True)
    for name in MANAGED_FILES:
        (root / name).unlink(missing_ok=True)


def _write_csv(path: Path, specs: list[SlideSpec]) -> None:
    table = pd.DataFrame(
        {"wsi_name": [s.name for s in specs], "wsi_label": [s.label for s in specs]}
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def _all_files(paths: CohortPaths, specs: list[SlideSpec]) -> list[Path]:
    files = [paths.root / n for n in ("wsi_labels.csv", "train.csv", "test.csv")]
    for s in specs:
        files += paths.slide_files(s) + paths.processed_files(s) + [paths.patch_labels(s.name)]
    return files


def make_cohort(
    out: str | os.PathLike = "data/demo",
    seed: int = 0,
    force: bool = False,
    workers: int | None = None,
    quiet: bool = False,
    sizes: tuple = DEFAULT_SIZES,
) -> Path:
    """Make (or finish, or just find) the demo cohort in ``out``; return its folder.

    ``sizes`` = ((normal, tumour) slides in train, in test); the default is the book's cohort.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise CohortError(f"seed must be a whole number, not {seed!r}")
    root = Path(out).expanduser().resolve()
    _check_out_dir(root, int(seed), sizes, force)  # bad --out fails here, before anything
    root.parent.mkdir(parents=True, exist_ok=True)
    # two notebooks starting at once on a fresh machine: the second waits, then finds it done
    with file_lock(root.parent / f".{root.name}.lock"):
        return _make_cohort(root, int(seed), force, workers, quiet, sizes)


def _make_cohort(
    root: Path, seed: int, force: bool, workers: int | None, quiet: bool, sizes: tuple
) -> Path:
    from helpers.labels import label_folder

    state = _check_out_dir(root, seed, sizes, force)
    specs = plan_cohort(int(seed), sizes)
    stamp = {"seed": int(seed), "version": COHORT_VERSION, "sizes": [list(x) for x in sizes]}
    paths = CohortPaths(root)
    if state == "complete" and all(p.exists() for p in _all_files(paths, specs)):
        if not quiet:
            print(f"Demo cohort already complete in {root} (seed {seed}).")
        return root
    if state == "new" and root.exists():
        _clear(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)
    (root / IN_PROGRESS).write_text(json.dumps(stamp))
    if not quiet:
        verb = "Finishing the interrupted" if state != "new" else "Making the"
        print(f"{verb} demo cohort in {root} (seed {seed}, {len(specs)} slides)...")
    t0 = time.perf_counter()
    todo = [
        s
        for s in specs
        if not all(p.exists() for p in paths.slide_files(s) + paths.processed_files(s))
    ]
    workers = workers or max(1, min(os.cpu_count() or 1, 4))
    bar = tqdm(
        total=len(specs), initial=len(specs) - len(todo), desc="slides", unit="slide", disable=quiet
    )
    if workers == 1 or len(todo) <= 1:
        for s in todo:
            _build_one(s, str(root), int(seed))
            bar.update()
    elif todo:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(_build_one, s, str(root), int(seed)) for s in todo]
            for fut in as_completed(futures):
                fut.result()
                bar.update()
    bar.close()
    _write_csv(root / "wsi_labels.csv", specs)
    _write_csv(root / "train.csv", [s for s in specs if s.split == "train"])
    _write_csv(root / "test.csv", [s for s in specs if s.split == "test"])
    label_folder(
        csv_path=root / "wsi_labels.csv",
        coords_dir=paths.trident_dir / "patches",
        save_dir=paths.trident_dir / "patch_labels",
        masks_dir=root / "masks",
        patch_size=PATCH_SIZE_LEVEL0,
        progress=not quiet,
    )
    manifest = {
        **stamp,
        "encoder": ENCODER_NAME,
        "slides": [asdict(s) for s in specs],
    }
    with atomic_path(root / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))
    (root / IN_PROGRESS).unlink(missing_ok=True)
    if not quiet:
        _print_summary(root, cohort_summary(root), time.perf_counter() - t0)
    return root


def cohort_summary(root: str | os.PathLike) -> pd.DataFrame:
    """One row per slide: split, label, kind, bag size and tumour patches."""
    import h5py

    root = Path(root)
    paths = CohortPaths(root)
    info = json.loads((root / MANIFEST).read_text()) if (root / MANIFEST).exists() else {}
    rows = []
    for s in plan_cohort(info.get("seed", 0), info.get("sizes", DEFAULT_SIZES)):
        with h5py.File(paths.patch_labels(s.name), "r") as f:
            labels = f["patch_labels"][:]
        rows.append({**asdict(s), "n_patches": len(labels), "n_tumor_patches": int(labels.sum())})
    table = pd.DataFrame(rows).drop(columns="index")
    table["tumor_fraction"] = table["n_tumor_patches"] / table["n_patches"]
    return table


def _print_summary(root: Path, table: pd.DataFrame, seconds: float) -> None:
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    print(f"\nDemo cohort ready in {root} ({seconds:.0f} s, {size / 1e6:.0f} MB):")
    for sub in ("wsis", "masks", "annotations", "trident_processed"):
        print(f"  {root / sub}")
    print(
        f"{len(table)} slides ({(table.label == 1).sum()} tumour: "
        f"{(table.kind == 'macro').sum()} macro, {(table.kind == 'micro').sum()} micro); "
        f"bag size mean {table.n_patches.mean():.0f} (min {table.n_patches.min()}, "
        f"max {table.n_patches.max()})"
    )
    by_kind = table.groupby("kind")["tumor_fraction"].agg(["mean", "min", "max"])
    print("tumour-patch fraction by kind:\n" + by_kind.round(3).to_string())


def ensure_cohort(out: str | os.PathLike = "data/demo", seed: int = 0, quiet: bool = False) -> Path:
    """Make the demo cohort in ``out`` unless it is already complete (then return at once)."""
    return make_cohort(out, seed=seed, quiet=quiet)


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seed must be a whole number, not {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="data/demo", help="output folder (default: data/demo)")
    parser.add_argument("--seed", type=_seed, default=0, help="random seed (default: 0)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a cohort exists")
    parser.add_argument("--workers", type=int, default=None, help="parallel processes")
    args = parser.parse_args(argv)
    try:
        make_cohort(args.out, seed=args.seed, force=args.force, workers=args.workers)
    except CohortError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
