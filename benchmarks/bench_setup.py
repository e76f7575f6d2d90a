"""How long a chapter's first cell waits when the demo cohort is already there (issue 11's
budget: a cached ``helpers.settings.setup()`` in at most 2 s on a 2-core machine).

    PYTHONPATH=. python benchmarks/bench_setup.py [--repeat 5] [--budget 2.0]

Each run is a fresh Python process that imports ``helpers.settings`` and calls
``setup(verbose=False)``, timed from before the import (torch's import included, as a
reader's kernel pays it) to the return. The cohort is made first if it is missing (that
first build is not timed). Prints every time, then ``median <t> s (budget <b> s): PASS`` or
``FAIL``, and exits with 1 on FAIL.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

PROBE = (
    "import time; t = time.perf_counter(); import helpers.settings as s; "
    "s.setup(verbose=False); print(time.perf_counter() - t)"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds (median)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    # the cohort in place (built now if missing), and the files in the page cache
    subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True)
    times = []
    for _ in range(args.repeat):
        out = subprocess.run([sys.executable, "-c", PROBE], check=True, capture_output=True)
        times.append(float(out.stdout.decode().split()[-1]))
    print("cached setup():", ", ".join(f"{t:.2f} s" for t in times))
    median = statistics.median(times)
    ok = median <= args.budget
    print(f"median {median:.2f} s (budget {args.budget:.1f} s): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
