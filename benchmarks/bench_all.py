"""``make bench``: a short version of every benchmark of ``benchmarks/``, one after another.

    PYTHONPATH=. python benchmarks/bench_all.py [--only canvas-demo training ...] [--list]

Each benchmark runs as its own process with the arguments below (fewer slides, patches,
seeds or repeats than its defaults, the same checks), prints its results against the budgets
of ``benchmarks/budgets.py``, and is followed by its wall time. A failing benchmark does not
stop the others; the exit status is 1 when any failed. The demo cohort is the chapters'
(``MIL_BOOK_DEMO_DIR``, else ``data/demo``), the rehearsal folder ``data/rehearsal``
(``make rehearsal``; ``--rehearsal`` picks another). About 5 minutes on 2 cores once chapter
7 trains within its budget.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def steps(rehearsal: Path) -> dict[str, list[str]]:
    """Name -> command line of every short benchmark, in the order they run."""
    py = [sys.executable]
    return {
        # helpers.canvas / helpers.coverage against the per-patch way: a small, a large and a
        # normal demo slide (the per-patch ways timed on 300 patches a slide), then the
        # rehearsal folder's CAMELYON16-size slide (on 200)
        "canvas-demo": [*py, str(HERE / "bench_labels_canvas.py"),
                        "--slides", "test_003", "test_007", "normal_002", "--sample", "300"],
        "canvas-rehearsal": [*py, str(HERE / "bench_labels_canvas.py"), "--root", str(rehearsal),
                             "--sample", "200"],
        # the book's slide-level steps on that slide, time and memory
        "scale": [*py, str(HERE / "bench_scale.py"), "--rehearsal", str(rehearsal)],
        # a chapter's first cell: setup() cached (3 runs) and in an empty folder
        "setup": [*py, str(HERE / "bench_setup.py"), "--repeat", "3", "--cold_repeat", "1"],
        # the demo cohort from pixels, one slide, then found again
        "cohort": [*py, str(HERE / "bench_cohort.py")],
        # the difficulty of the demo cohort: the tutorial's recipe on three seeds, not six
        "demo-quality": [*py, str(HERE / "demo_quality.py"), "--seeds", "0", "1", "2"],
        # the book's training loop against torchmil's Trainer, side by side
        "loop": [*py, str(HERE / "bench_loop.py")],
        # chapter 6's two slide viewers: what they add to the site, and the time to write them
        "viewer": [*py, str(HERE / "bench_viewer.py")],
        # chapters 4, 5 and 7: their training, cold
        "training": [*py, str(HERE / "bench_training.py")],
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rehearsal", type=Path, default=REPO / "data" / "rehearsal")
    parser.add_argument("--only", nargs="*", default=None, help="these benchmarks only")
    parser.add_argument("--list", action="store_true", help="print the commands and stop")
    args = parser.parse_args(argv)
    todo = steps(args.rehearsal.resolve())
    if args.only:
        if unknown := sorted(set(args.only) - set(todo)):
            parser.error(f"unknown benchmarks {unknown}; there are {list(todo)}")
        todo = {name: cmd for name, cmd in todo.items() if name in args.only}
    if args.list:
        for name, cmd in todo.items():
            print(f"{name}: {' '.join(cmd)}")
        return 0
    if not (args.rehearsal / "rehearsal.json").exists() and any(
        "rehearsal" in name or name == "scale" for name in todo
    ):
        print(
            f"no rehearsal folder in {args.rehearsal}: run `make rehearsal` first", file=sys.stderr
        )
        return 2
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    start, results = time.perf_counter(), {}
    for name, cmd in todo.items():
        print(f"\n==> bench {name}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run(cmd, cwd=REPO, env=env).returncode
        results[name] = (rc, time.perf_counter() - t0)
        print(f"==> bench {name}: {results[name][1]:.0f} s (exit {rc})", flush=True)
    print(f"\nbenchmarks: {time.perf_counter() - start:.0f} s in all")
    for name, (rc, seconds) in results.items():
        print(f"  {name:<17} {seconds:5.0f} s  {'ok' if rc == 0 else 'FAILED'}")
    failed = [name for name, (rc, _) in results.items() if rc]
    print(f"make bench: {'FAILED: ' + ', '.join(failed) if failed else 'every goal met'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
