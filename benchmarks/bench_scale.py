"""Benchmark: the book's slide-level steps on one slide of CAMELYON16 size.

Runs, on the rehearsal folder's largest slide (97,792 x 219,648 level-0 px, 9 levels, a
tumour mask and an XML annotation; see tests/rehearsal.py):

- ``patch grid``: open the slide, ``helpers.trident.segment_tissue`` (TRIDENT's otsu
  segmenter at 1.25x) and ``helpers.trident.patch_grid`` (20x, 512 px);
- ``labels (mask)``: ``helpers.coverage.tumor_fraction_from_mask`` from the pyramidal mask;
- ``labels (XML)``: ``helpers.coverage.tumor_fraction_from_xml`` from the ASAP XML;
- ``canvas``: ``helpers.canvas.slide_canvas`` (50-px cells);
- ``thumbnail overlay``: ``helpers.canvas.overlay_on_thumbnail`` (the patch labels drawn
  over a 1,000-px thumbnail).

Each step runs in a fresh Python process (imports done and the slide's coords read before
the clock starts) and reports its wall time and the process's peak resident memory
(``ru_maxrss``, which includes the interpreter and libraries: the import baseline is printed
too). A last process runs every step in turn and reports the whole run's time and peak. The
goal, on a 2-core machine (``benchmarks/budgets.py``): every step <= 5 s, the whole <= 1.5 GB
peak; each line ends with PASS, MISS (within noise) or FAIL, and the script exits with 1 if
anything fails.

Usage::

    PYTHONPATH=. python benchmarks/bench_scale.py [--rehearsal data/rehearsal] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from budgets import SCALE_PEAK_MB as PEAK_GOAL_MB  # noqa: E402
from budgets import SCALE_STEP_SECONDS as STEP_GOAL_S  # noqa: E402
from budgets import verdict  # noqa: E402

STEPS = ("patch grid", "labels (mask)", "labels (XML)", "canvas", "thumbnail overlay")


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _run_steps(root: Path, name: str, steps: list[str]) -> dict:
    """Inside the worker process: run ``steps`` on slide ``name`` and time each."""
    import numpy as np
    import openslide

    from helpers import canvas, coverage, formats, trident
    from helpers.layout import WSI_EXTENSIONS

    job = root / "trident_processed" / "20x_512px_0px_overlap"
    attrs, coords = formats.read_coords(job / "patches" / f"{name}_patches.h5")
    p = int(attrs["patch_size_level0"])
    size = (int(attrs["level0_width"]), int(attrs["level0_height"]))
    wsi = next(
        root / "wsis" / f"{name}{e}"
        for e in WSI_EXTENSIONS
        if (root / "wsis" / f"{name}{e}").exists()
    )
    values = np.zeros(len(coords))
    out = {"baseline_mb": _maxrss_mb(), "n_patches": len(coords), "steps": {}}
    for step in steps:
        t0 = time.perf_counter()
        if step == "patch grid":
            with openslide.OpenSlide(str(wsi)) as slide:
                tissue, downsample = trident.segment_tissue(slide)
                grid = trident.patch_grid(tissue, downsample, slide.dimensions, p)
            detail = f"{len(grid)} patches (TRIDENT-format file: {len(coords)})"
        elif step == "labels (mask)":
            mask = root / "masks" / f"{name}_mask.tif"
            fractions = coverage.tumor_fraction_from_mask(mask, coords, p)
            values = (fractions > 0.5).astype(float)
            detail = f"{int(values.sum())} tumour patches"
        elif step == "labels (XML)":
            fractions = coverage.tumor_fraction_from_xml(
                root / "annotations" / f"{name}.xml", coords, p, level0_size=size
            )
            detail = f"{int((fractions > 0.5).sum())} tumour patches"
        elif step == "canvas":
            # the path, not an open slide: TIFF tiles are then decoded by tifffile
            img, _, _ = canvas.slide_canvas(wsi, coords, p, cell_size=50)
            detail = f"canvas {img.shape[1]} x {img.shape[0]} px"
        elif step == "thumbnail overlay":
            with openslide.OpenSlide(str(wsi)) as slide:
                img = canvas.overlay_on_thumbnail(slide, coords, values, p)
            detail = f"overlay {img.shape[1]} x {img.shape[0]} px"
        else:
            raise ValueError(step)
        out["steps"][step] = {
            "seconds": time.perf_counter() - t0,
            "peak_mb": _maxrss_mb(),
            "detail": detail,
        }
    return out


def _worker(argv: list[str]) -> int:
    root, name, steps = Path(argv[0]), argv[1], json.loads(argv[2])
    print(json.dumps(_run_steps(root, name, steps)))
    return 0


def _spawn(root: Path, name: str, steps: list[str]) -> dict:
    run = subprocess.run(
        [sys.executable, __file__, "--worker", str(root), name, json.dumps(steps)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    if run.returncode:
        raise RuntimeError(f"steps {steps} failed:\n{run.stderr}")
    return json.loads(run.stdout.strip().splitlines()[-1])


def largest_slide(root: Path) -> str:
    info = json.loads((root / "rehearsal.json").read_text())
    return max(info["slides"], key=lambda r: r["width"] * r["height"])["name"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        return _worker(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rehearsal", default=str(REPO / "data" / "rehearsal"))
    parser.add_argument("--repeat", type=int, default=1, help="runs per step (best is kept)")
    args = parser.parse_args(argv)
    root = Path(args.rehearsal)
    if not (root / "rehearsal.json").exists():
        import importlib.util

        spec = importlib.util.spec_from_file_location("rehearsal", REPO / "tests" / "rehearsal.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["rehearsal"] = module
        spec.loader.exec_module(module)
        print(f"making the rehearsal folder in {root} ...", flush=True)
        module.make_rehearsal(root, patch_labels=True)
    name = largest_slide(root)
    info = {r["name"]: r for r in json.loads((root / "rehearsal.json").read_text())["slides"]}[name]
    print(
        f"slide {name}: {info['width']} x {info['height']} px, {info['levels']} levels, "
        f"{info['n_patches']} patches of {info['patch_size_level0']} px"
    )
    ok = True
    for step in STEPS:
        runs = [_spawn(root, name, [step]) for _ in range(max(1, args.repeat))]
        best = min(runs, key=lambda r: r["steps"][step]["seconds"])
        s = best["steps"][step]
        verdicts = [
            verdict(s["seconds"], STEP_GOAL_S, higher_is_better=False),
            verdict(s["peak_mb"], PEAK_GOAL_MB, higher_is_better=False),
        ]
        worst = "FAIL" if "FAIL" in verdicts else max(verdicts, key=len)
        ok &= worst != "FAIL"
        print(
            f"{step:<18} {s['seconds']:6.2f} s   peak {s['peak_mb']:6.0f} MB "
            f"(imports {best['baseline_mb']:4.0f} MB)   {s['detail']:<40} {worst}"
        )
    whole = _spawn(root, name, list(STEPS))
    total = sum(s["seconds"] for s in whole["steps"].values())
    peak = max(s["peak_mb"] for s in whole["steps"].values())
    whole = verdict(peak, PEAK_GOAL_MB, higher_is_better=False)
    ok &= whole != "FAIL"
    print(
        f"{'whole (one process)':<18} {total:6.2f} s   peak {peak:6.0f} MB "
        f"(goal: every step <= {STEP_GOAL_S:g} s, peak <= {PEAK_GOAL_MB:g} MB)   {whole}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
