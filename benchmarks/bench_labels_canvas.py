"""Benchmark: helpers.canvas / helpers.coverage against the per-patch way, slide by slide.

The per-patch way is the earlier tutorial's, kept in the package as the tests' reference:
``helpers.reference.slide_canvas_per_patch`` (one level-0 read per patch, shrunk to the cell
size) for the canvas and ``helpers.reference.tumor_fraction_per_patch`` (one level-0 read of
the mask per patch) for the labels. Both ways run side by side in one run, each on a freshly
opened slide (ours first, so it never profits from a cache the slow way warmed; ours is the
median of ``--repeat`` runs), and their results are checked against each other.

Usage::

    PYTHONPATH=. python benchmarks/bench_labels_canvas.py [--root data/demo] [--n_tumor 4]
        [--n_normal 2] [--slides NAME ...] [--sample N] [--repeat 3] [--cell_size 50]
        [--csv benchmarks/results/labels_canvas.csv]

``--root`` is the demo cohort (default: ``MIL_BOOK_DEMO_DIR``, else ``data/demo``) or a
rehearsal folder (``tests/rehearsal.py``; then the default slide is its largest, a
CAMELYON16-size one, and the canvas goal is the rehearsal's). ``--sample N`` times the
per-patch ways on N patches spread evenly over each slide and scales their time to the whole
bag (each patch is one independent read, so their time is linear in the patches); ours always
draws and labels the whole slide. The checks compare the sampled patches: every canvas cell
within 4/255 of the per-patch one on average once both are blurred by one pixel (the
per-patch way's bilinear tenfold shrink aliases the texture finer than a pixel: it differs by
about 7/255 from the same patches shrunk with ``cv2.INTER_AREA``), and the labels identical
wherever the tumour fraction is farther than 0.02 from the threshold (and for at least 99.5%
of the patches). The last two lines printed are ``canvas speed-up: <x>x (goal ...)`` and
``labels speed-up: <x>x (goal ...)``: total per-patch time / total helpers time, over all
slides. Exit status 1 when a check fails or a goal is missed by more than the noise
(``benchmarks/budgets.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import h5py
import numpy as np
import openslide
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from budgets import (  # noqa: E402
    CANVAS_SPEEDUP_DEMO,
    CANVAS_SPEEDUP_REHEARSAL,
    LABELS_SPEEDUP,
    failed,
    verdict,
)

from helpers.canvas import slide_canvas  # noqa: E402
from helpers.coverage import tumor_fraction_from_mask  # noqa: E402
from helpers.labels import labels_from_fractions  # noqa: E402
from helpers.layout import DEFAULT_PATCH_DIR, WSI_EXTENSIONS  # noqa: E402
from helpers.reference import slide_canvas_per_patch, tumor_fraction_per_patch  # noqa: E402

THRESHOLD = 0.5
TOL = 0.02  # labels must agree where |fraction - threshold| > TOL
MAX_CELL_DIFF = 4.0  # of 255: mean absolute difference of the blurred cells


def default_root() -> Path:
    return Path(os.environ.get("MIL_BOOK_DEMO_DIR") or REPO / "data" / "demo")


def is_rehearsal(root: Path) -> bool:
    return (root / "rehearsal.json").exists()


def pick_slides(root: Path, n_tumor: int, n_normal: int) -> list[str]:
    """The first ``n_tumor`` tumour and ``n_normal`` normal slides of a demo cohort, or the
    largest slide of a rehearsal folder."""
    if is_rehearsal(root):
        info = json.loads((root / "rehearsal.json").read_text())
        return [max(info["slides"], key=lambda r: r["width"] * r["height"])["name"]]
    table = pd.read_csv(root / "wsi_labels.csv").sort_values("wsi_name")
    tumor = table[table["wsi_label"] == 1].head(n_tumor)
    normal = table[table["wsi_label"] == 0].head(n_normal)
    return [*tumor["wsi_name"], *normal["wsi_name"]]


def on_slide(path, fn, *args):
    """``fn(slide, *args)`` on a freshly opened slide."""
    with openslide.OpenSlide(path) as slide:
        return fn(slide, *args)


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def median_time(repeat: int, fn, *args, **kw):
    """``(last result, median wall time)`` of ``repeat`` calls."""
    times = []
    for _ in range(max(1, repeat)):
        out, seconds = timed(fn, *args, **kw)
        times.append(seconds)
    return out, statistics.median(times)


def slide_files(root: Path, name: str) -> tuple[np.ndarray, int, str, str | None]:
    """``(coords_level0, patch_size_level0, slide path, mask path or None)``."""
    patches = root / DEFAULT_PATCH_DIR / "patches" / f"{name}_patches.h5"
    if not patches.exists():  # the demo's and the rehearsal's job folder
        patches = root / "trident_processed" / "20x_512px_0px_overlap" / "patches"
        patches = patches / f"{name}_patches.h5"
    with h5py.File(patches, "r") as f:
        coords_level0 = f["coords"][:]
        patch_size_level0 = int(f["coords"].attrs["patch_size_level0"])
    wsi = next(
        str(root / "wsis" / f"{name}{e}")
        for e in WSI_EXTENSIONS
        if (root / "wsis" / f"{name}{e}").exists()
    )
    mask = root / "masks" / f"{name}_mask.tif"
    return coords_level0, patch_size_level0, wsi, str(mask) if mask.exists() else None


def sample_index(n: int, sample: int) -> np.ndarray:
    """``sample`` indices spread evenly over ``range(n)`` (all of them when ``sample`` is 0
    or at least ``n``)."""
    if sample <= 0 or sample >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, sample).round().astype(np.int64))


def cell_differences(
    fast: np.ndarray, rows: np.ndarray, cols: np.ndarray, slow: np.ndarray, rows_s, cols_s, cell
) -> tuple[float, float]:
    """Mean absolute difference of the patches' cells, raw and after a one-pixel Gaussian blur
    of each cell: patch ``i`` is ``(rows[i], cols[i])`` on ``fast``, ``(rows_s[i],
    cols_s[i])`` on ``slow``."""
    raw, blurred = [], []
    for r, c, rs, cs in zip(rows, cols, rows_s, cols_s, strict=True):
        a = fast[r * cell : (r + 1) * cell, c * cell : (c + 1) * cell].astype(np.float32)
        b = slow[rs * cell : (rs + 1) * cell, cs * cell : (cs + 1) * cell].astype(np.float32)
        raw.append(np.abs(a - b).mean())
        blurred.append(
            np.abs(cv2.GaussianBlur(a, (0, 0), 1.0) - cv2.GaussianBlur(b, (0, 0), 1.0)).mean()
        )
    return float(np.mean(raw)), float(np.mean(blurred))


def warm_up(root: Path, name: str, cell_size: int) -> None:
    """Both ways once on a few patches, untimed: imports and codec set-up are not per slide."""
    coords, p, wsi, mask = slide_files(root, name)
    coords = coords[:3]
    slide_canvas(wsi, coords, p, cell_size, check_tissue=False)
    on_slide(wsi, slide_canvas_per_patch, coords, p, cell_size)
    if mask is not None:
        tumor_fraction_from_mask(mask, coords, p)
        on_slide(mask, tumor_fraction_per_patch, coords, p)


def bench_slide(root: Path, name: str, cell_size: int, sample: int, repeat: int) -> dict:
    coords, p, wsi, mask = slide_files(root, name)
    idx = sample_index(len(coords), sample)
    scale = len(coords) / len(idx)  # the per-patch time of the sample -> of the whole bag
    row = {"slide": name, "patches": len(coords), "timed_per_patch": len(idx)}

    # canvas: helpers first (the whole slide), then per patch, each on a fresh handle
    (fast, rows, cols), t_fast = median_time(repeat, slide_canvas, wsi, coords, p, cell_size)
    (slow, rows_s, cols_s), t_slow = timed(
        on_slide, wsi, slide_canvas_per_patch, coords[idx], p, cell_size
    )
    raw, blurred = cell_differences(fast, rows[idx], cols[idx], slow, rows_s, cols_s, cell_size)
    row.update(
        canvas_per_patch_s=t_slow * scale, canvas_helpers_s=t_fast, cell_mad=raw,
        cell_mad_blurred=blurred,
    )  # fmt: skip

    if mask is None:
        return row
    fractions_fast, t_fast = median_time(
        repeat, tumor_fraction_from_mask, mask, coords, p, tumor_value=2
    )
    fractions_slow, t_slow = timed(on_slide, mask, tumor_fraction_per_patch, coords[idx], p)
    fractions_fast = fractions_fast[idx]
    lab_fast = labels_from_fractions(fractions_fast, THRESHOLD)
    lab_slow = labels_from_fractions(fractions_slow, THRESHOLD)
    far = np.abs(fractions_slow - THRESHOLD) > TOL
    row.update(
        tumor_patches=int(lab_slow.sum()),
        labels_per_patch_s=t_slow * scale,
        labels_helpers_s=t_fast,
        max_fraction_err=float(np.abs(fractions_fast - fractions_slow).max()) if len(idx) else 0.0,
        labels_equal=int((lab_fast == lab_slow).sum()),
        labels_equal_far=bool((lab_fast[far] == lab_slow[far]).all()),
        near_threshold=int((~far).sum()),
    )
    return row


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", "--demo_dir", type=Path, default=default_root(),
                    help="demo cohort or rehearsal folder")  # fmt: skip
    ap.add_argument("--n_tumor", type=int, default=4, help="demo tumour slides to time")
    ap.add_argument("--n_normal", type=int, default=2, help="demo normal slides to time")
    ap.add_argument("--slides", nargs="*", default=None, help="these slides instead")
    ap.add_argument(
        "--sample", type=int, default=0, help="per-patch ways timed on N patches a slide (0: all)"
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs of ours a slide (median)")
    ap.add_argument("--cell_size", type=int, default=50)
    ap.add_argument("--csv", type=Path, default=None, help="also save the table as CSV")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> pd.DataFrame:
    """One row per timed slide (see :func:`bench_slide`), after an untimed warm-up."""
    if not is_rehearsal(args.root) and not (args.root / "wsi_labels.csv").exists():
        from helpers.demo import ensure_cohort

        ensure_cohort(args.root)
    names = args.slides or pick_slides(args.root, args.n_tumor, args.n_normal)
    warm_up(args.root, names[0], args.cell_size)
    rows = []
    for name in names:
        rows.append(bench_slide(args.root, name, args.cell_size, args.sample, args.repeat))
        print(f"  timed {name}", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def print_table(t: pd.DataFrame, args: argparse.Namespace) -> None:
    """The per-slide table and the totals of both ways."""
    n = int(t["patches"].sum())
    show = t.assign(canvas_x=t["canvas_per_patch_s"] / t["canvas_helpers_s"])
    if "labels_helpers_s" in t:
        show = show.assign(labels_x=t["labels_per_patch_s"] / t["labels_helpers_s"])
    kind = "rehearsal" if is_rehearsal(args.root) else "demo"
    timed_n = int(t["timed_per_patch"].sum())
    print(f"{len(t)} {kind} slide(s), {n} patches (per-patch ways timed on {timed_n}), "
          f"cell {args.cell_size} px, {os.cpu_count()} CPU(s)")  # fmt: skip
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(show.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"per-patch canvas: {t['canvas_per_patch_s'].sum():.2f} s "
        f"({n / t['canvas_per_patch_s'].sum():.1f} patches/s); helpers.canvas: "
        f"{t['canvas_helpers_s'].sum():.3f} s; cells differ by {t['cell_mad'].max():.2f}/255 "
        f"at most, {t['cell_mad_blurred'].max():.2f}/255 blurred (limit {MAX_CELL_DIFF:g})"
    )
    if "labels_helpers_s" in t:
        lab = t.dropna(subset=["labels_helpers_s"])
        m = int(lab["timed_per_patch"].sum())
        print(
            f"per-patch labels: {lab['labels_per_patch_s'].sum():.2f} s; helpers.coverage: "
            f"{lab['labels_helpers_s'].sum():.3f} s; labels equal {int(lab['labels_equal'].sum())}"
            f"/{m} ({100 * lab['labels_equal'].sum() / max(m, 1):.2f}%), all equal away from the "
            f"threshold: {bool(lab['labels_equal_far'].all())}, max |fraction error| "
            f"{lab['max_fraction_err'].max():.4f}"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    t = run(args)
    print_table(t, args)
    canvas_goal = CANVAS_SPEEDUP_REHEARSAL if is_rehearsal(args.root) else CANVAS_SPEEDUP_DEMO
    canvas_x = t["canvas_per_patch_s"].sum() / t["canvas_helpers_s"].sum()
    checks = bool(t["cell_mad_blurred"].max() <= MAX_CELL_DIFF)
    verdicts = [verdict(canvas_x, canvas_goal)]
    lines = [f"canvas speed-up: {canvas_x:.1f}x (goal {canvas_goal:g}x): {verdicts[-1]}"]
    if "labels_helpers_s" in t:
        lab = t.dropna(subset=["labels_helpers_s"])
        labels_x = lab["labels_per_patch_s"].sum() / lab["labels_helpers_s"].sum()
        checks &= bool(lab["labels_equal_far"].all())
        checks &= bool(lab["labels_equal"].sum() >= 0.995 * lab["timed_per_patch"].sum())
        verdicts.append(verdict(labels_x, LABELS_SPEEDUP))
        lines.append(f"labels speed-up: {labels_x:.1f}x (goal {LABELS_SPEEDUP:g}x): {verdicts[-1]}")
    print(f"checks (labels equal away from the threshold, canvas cells alike): "
          f"{'pass' if checks else 'FAIL'}")  # fmt: skip
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        t.to_csv(args.csv, index=False)
    print("\n".join(lines))
    return 0 if checks and not failed(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
