"""Benchmark: helpers.canvas / helpers.labels against the per-patch way, on demo slides.

The per-patch way is the earlier tutorial's, kept in the package as the tests' reference:
``helpers.reference.slide_canvas_per_patch`` (one level-0 read per patch, shrunk to the cell
size) for the canvas and ``helpers.coverage.tumor_fraction_per_patch`` (one level-0 read of
the mask per patch) for the labels. The same slides are timed both ways in one run, each way
on a freshly opened slide (the fast way first, so it never profits from a warmer cache), and
the results are checked: the canvases within 8/255 mean absolute difference, the labels
identical for every patch whose tumor fraction is not within 0.02 of the threshold.

Usage::

    PYTHONPATH=. python benchmarks/bench_labels_canvas.py [--demo_dir data/demo] [--n_tumor 4]
        [--n_normal 2] [--cell_size 50] [--csv benchmarks/results/labels_canvas.csv]

The last two lines printed are ``canvas speed-up: <x>x`` and ``labels speed-up: <x>x``
(total time of the per-patch way / total time of the helpers, over all slides).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import openslide
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from helpers.canvas import slide_canvas  # noqa: E402
from helpers.coverage import tumor_fraction_from_mask, tumor_fraction_per_patch  # noqa: E402
from helpers.labels import labels_from_fractions  # noqa: E402
from helpers.reference import slide_canvas_per_patch  # noqa: E402

THRESHOLD = 0.5
TOL = 0.02  # labels must agree where |fraction - threshold| > TOL
CANVAS_GOAL, LABELS_GOAL = 50.0, 20.0


def default_demo_dir() -> Path:
    return Path(os.environ.get("MIL_BOOK_DEMO_DIR") or REPO / "data" / "demo")


def pick_slides(demo: Path, n_tumor: int, n_normal: int) -> pd.DataFrame:
    table = pd.read_csv(demo / "wsi_labels.csv").sort_values("wsi_name")
    tumor = table[table["wsi_label"] == 1].head(n_tumor)
    normal = table[table["wsi_label"] == 0].head(n_normal)
    return pd.concat([tumor, normal], ignore_index=True)


def on_slide(path, fn, *args):
    """``fn(slide, *args)`` on a freshly opened slide."""
    with openslide.OpenSlide(path) as slide:
        return fn(slide, *args)


def timed(fn, *args, **kw):
    t0 = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t0


def slide_files(demo: Path, name: str, n: int | None = None) -> tuple[np.ndarray, int, str, str]:
    """``(coords_level0, patch_size_level0, slide path, mask path)`` of a demo slide (the
    first ``n`` patches, or all)."""
    trident = demo / "trident_processed" / "20x_512px_0px_overlap"
    with h5py.File(trident / "patches" / f"{name}_patches.h5", "r") as f:
        coords_level0 = f["coords"][:n]
        patch_size_level0 = int(f["coords"].attrs["patch_size_level0"])
    wsi, mask = str(demo / "wsis" / f"{name}.tif"), str(demo / "masks" / f"{name}_mask.tif")
    return coords_level0, patch_size_level0, wsi, mask


def warm_up(demo: Path, name: str, cell_size: int) -> None:
    """Both ways once on three patches, untimed: imports and codec set-up are not per slide."""
    coords, p, wsi, mask = slide_files(demo, name, 3)
    slide_canvas(wsi, coords, p, cell_size)
    on_slide(wsi, slide_canvas_per_patch, coords, p, cell_size)
    tumor_fraction_from_mask(mask, coords, p)
    on_slide(mask, tumor_fraction_per_patch, coords, p)


def bench_slide(demo: Path, name: str, cell_size: int) -> dict:
    coords, p, wsi, mask = slide_files(demo, name)

    # canvas: helpers first, then per patch, each on a fresh handle (opening is timed)
    (fast, rows, cols), t_fast_canvas = timed(lambda: slide_canvas(wsi, coords, p, cell_size))
    (slow, rows_ref, cols_ref), t_slow_canvas = timed(
        on_slide, wsi, slide_canvas_per_patch, coords, p, cell_size
    )
    same_grid = fast.shape == slow.shape and (rows == rows_ref).all() and (cols == cols_ref).all()
    canvas_diff = (
        float(np.abs(fast.astype(float) - slow.astype(float)).mean()) if same_grid else 255
    )

    # labels from the mask (read for every slide, normal ones too, so both ways do the same job)
    fractions_fast, t_fast_labels = timed(
        lambda: tumor_fraction_from_mask(mask, coords, p, tumor_value=2)
    )
    fractions_slow, t_slow_labels = timed(on_slide, mask, tumor_fraction_per_patch, coords, p)
    lab_fast = labels_from_fractions(fractions_fast, THRESHOLD)
    lab_slow = labels_from_fractions(fractions_slow, THRESHOLD)
    far = np.abs(fractions_slow - THRESHOLD) > TOL
    return {
        "slide": name,
        "patches": len(coords),
        "tumor_patches": int(lab_slow.sum()),
        "canvas_per_patch_s": t_slow_canvas,
        "canvas_helpers_s": t_fast_canvas,
        "canvas_mad": canvas_diff,
        "labels_per_patch_s": t_slow_labels,
        "labels_helpers_s": t_fast_labels,
        "max_fraction_err": (
            float(np.abs(fractions_fast - fractions_slow).max()) if len(coords) else 0.0
        ),
        "labels_equal": int((lab_fast == lab_slow).sum()),
        "labels_equal_far": bool((lab_fast[far] == lab_slow[far]).all()),
        "near_threshold": int((~far).sum()),
    }


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--demo_dir", type=Path, default=default_demo_dir())
    ap.add_argument("--n_tumor", type=int, default=4, help="tumor slides to time")
    ap.add_argument("--n_normal", type=int, default=2, help="normal slides to time")
    ap.add_argument("--cell_size", type=int, default=50)
    ap.add_argument("--csv", type=Path, default=None, help="also save the table as CSV")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> pd.DataFrame:
    """One row per timed slide (see :func:`bench_slide`), after an untimed warm-up."""
    if not (args.demo_dir / "wsi_labels.csv").exists():
        from helpers.demo import ensure_cohort

        ensure_cohort(args.demo_dir)
    slides = pick_slides(args.demo_dir, args.n_tumor, args.n_normal)
    warm_up(args.demo_dir, slides["wsi_name"].iloc[0], args.cell_size)
    rows = []
    for name in slides["wsi_name"]:
        rows.append(bench_slide(args.demo_dir, name, args.cell_size))
        print(f"  timed {name}", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def print_table(t: pd.DataFrame, args: argparse.Namespace) -> None:
    """The per-slide table and the totals of both ways."""
    n = int(t["patches"].sum())
    show = t.assign(
        canvas_x=t["canvas_per_patch_s"] / t["canvas_helpers_s"],
        labels_x=t["labels_per_patch_s"] / t["labels_helpers_s"],
    )[
        [
            "slide",
            "patches",
            "tumor_patches",
            "canvas_per_patch_s",
            "canvas_helpers_s",
            "canvas_x",
            "canvas_mad",
            "labels_per_patch_s",
            "labels_helpers_s",
            "labels_x",
            "max_fraction_err",
            "near_threshold",
        ]
    ]
    print(f"{len(t)} demo slides ({args.n_tumor} tumor, {args.n_normal} normal), {n} patches, "
          f"cell {args.cell_size} px, {os.cpu_count()} CPU(s)")  # fmt: skip
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(show.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"per-patch canvas: {t['canvas_per_patch_s'].sum():.2f} s "
        f"({n / t['canvas_per_patch_s'].sum():.1f} patches/s); helpers.canvas: "
        f"{t['canvas_helpers_s'].sum():.3f} s; worst mean abs diff {t['canvas_mad'].max():.2f}/255"
    )
    print(
        f"per-patch labels: {t['labels_per_patch_s'].sum():.2f} s; helpers.labels: "
        f"{t['labels_helpers_s'].sum():.3f} s; labels equal {t['labels_equal'].sum()}/{n} "
        f"({100 * t['labels_equal'].sum() / n:.2f}%), all equal away from the threshold: "
        f"{bool(t['labels_equal_far'].all())}, max |fraction error| "
        f"{t['max_fraction_err'].max():.4f}"
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    t = run(args)
    print_table(t, args)
    canvas_x = t["canvas_per_patch_s"].sum() / t["canvas_helpers_s"].sum()
    labels_x = t["labels_per_patch_s"].sum() / t["labels_helpers_s"].sum()
    ok = (
        bool(t["labels_equal_far"].all())
        and t["labels_equal"].sum() / t["patches"].sum() >= 0.995
        and t["canvas_mad"].max() < 8
        and canvas_x >= CANVAS_GOAL
        and labels_x >= LABELS_GOAL
    )
    print(f"checks (equal labels, canvas < 8/255, >= {CANVAS_GOAL:.0f}x / "
          f">= {LABELS_GOAL:.0f}x): {'pass' if ok else 'FAIL'}")  # fmt: skip
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        t.to_csv(args.csv, index=False)
    print(f"canvas speed-up: {canvas_x:.1f}x")
    print(f"labels speed-up: {labels_x:.1f}x")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
