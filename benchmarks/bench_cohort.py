"""The demo cohort built from pixels, cold, on a small subset; then found again, cached.

    PYTHONPATH=. python benchmarks/bench_cohort.py [--sizes 0 1 0 0] [--workers 1]

Cold: ``helpers.demo.make_cohort`` (what ``python -m helpers.demo`` runs) in a new folder
with ``sizes`` ((normal, tumour) slides in train, then in test; default one macro-metastasis
slide of 221 patches, close to the cohort's mean of 262), painting every slide in float64,
segmenting it, encoding its patches and labelling them; timed per slide and worker against
the README's figure (7.5 minutes for the 70 slides on 2 cores: about 13 s a slide). Cached:
``make_cohort`` again on the finished folder (the size and time of every file checked
against the manifest), against its budget. Budgets in ``benchmarks/budgets.py``; exit status
1 when one is missed by more than the noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import h5py

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from budgets import (  # noqa: E402
    COHORT_CACHED_SECONDS,
    COHORT_SECONDS_PER_SLIDE,
    failed,
    verdict,
)

from helpers.demo import CohortPaths, make_cohort, plan_cohort  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs=4, default=[0, 1, 0, 0],
        help="(normal, tumour) slides in train, then in test",
    )  # fmt: skip
    parser.add_argument("--workers", type=int, default=1, help="build processes")
    args = parser.parse_args(argv)
    sizes = ((args.sizes[0], args.sizes[1]), (args.sizes[2], args.sizes[3]))
    specs = plan_cohort(0, sizes)
    with tempfile.TemporaryDirectory(prefix="bench-cohort-") as tmp:
        root = Path(tmp) / "demo"
        start = time.perf_counter()
        make_cohort(root, sizes=sizes, workers=args.workers, quiet=True)
        cold = time.perf_counter() - start
        paths = CohortPaths(root)
        patches = 0
        for spec in specs:
            with h5py.File(paths.features_path(spec.name), "r") as f:
                patches += len(f["coords"])
        start = time.perf_counter()
        make_cohort(root, sizes=sizes, quiet=True)
        cached = time.perf_counter() - start
    per_slide = cold / len(specs) * min(args.workers, len(specs))  # seconds a worker
    verdicts = [
        verdict(per_slide, COHORT_SECONDS_PER_SLIDE, higher_is_better=False),
        verdict(cached, COHORT_CACHED_SECONDS, higher_is_better=False),
    ]
    names = ", ".join(f"{s.name} ({s.kind})" for s in specs)
    print(f"cold build of {names}: {cold:.1f} s for {patches} patches, {args.workers} worker(s)")
    print(f"cold build: {per_slide:.1f} s per slide a worker "
          f"(budget {COHORT_SECONDS_PER_SLIDE:g} s): {verdicts[0]}")  # fmt: skip
    print(f"cached (the cohort found again): {cached:.3f} s "
          f"(budget {COHORT_CACHED_SECONDS:g} s): {verdicts[1]}")  # fmt: skip
    return 1 if failed(verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
