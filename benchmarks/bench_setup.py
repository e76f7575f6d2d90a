"""How long a chapter's first cell waits: ``helpers.settings.setup()`` with the demo cohort in
place (cached), and its fast start in an empty folder (cold: the h5 files written from the
arrays shipped with the package; the slides are painted later, when a chapter opens them).

    PYTHONPATH=. python benchmarks/bench_setup.py [--repeat 5] [--cold_repeat 1]

Each run is a fresh Python process that imports ``helpers.settings`` and calls
``setup(verbose=False)``, timed from before the import (torch's import included, as a
reader's kernel pays it) to the return. Cached: the cohort of ``MIL_BOOK_DEMO_DIR`` (made
first if missing, untimed; one untimed warm-up), ``--repeat`` runs. Cold: a new empty folder
each run, ``--cold_repeat`` runs. Prints every time and each median against its budget
(``benchmarks/budgets.py``: issue 11's 2 s cached, the README's "seconds" cold), and exits
with 1 when one misses it by more than the noise.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from budgets import SETUP_CACHED_SECONDS, SETUP_COLD_SECONDS, failed, verdict  # noqa: E402

PROBE = (
    "import time; t = time.perf_counter(); import helpers.settings as s; "
    "s.setup(verbose=False); print(time.perf_counter() - t)"
)


def probe(env: dict | None = None) -> float:
    """Seconds of ``setup()`` in a fresh process (``env``: the environment)."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE], check=True, capture_output=True, env=env, text=True
    )
    return float(out.stdout.split()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="cached runs")
    parser.add_argument("--cold_repeat", type=int, default=1, help="cold runs (0: none)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.cold_repeat < 0:
        parser.error("--repeat must be at least 1 and --cold_repeat at least 0")
    verdicts = []
    probe()  # the cohort in place (built now if missing), and the files in the page cache
    times = [probe() for _ in range(args.repeat)]
    median = statistics.median(times)
    verdicts.append(verdict(median, SETUP_CACHED_SECONDS, higher_is_better=False))
    print("cached setup():", ", ".join(f"{t:.2f} s" for t in times))
    print(f"cached setup() median {median:.2f} s (budget {SETUP_CACHED_SECONDS:g} s): "
          f"{verdicts[-1]}")  # fmt: skip
    if args.cold_repeat:
        cold = []
        for _ in range(args.cold_repeat):
            with tempfile.TemporaryDirectory(prefix="bench-setup-") as tmp:
                env = {**os.environ, "MIL_BOOK_DEMO_DIR": str(Path(tmp) / "demo")}
                cold.append(probe(env))
        median = statistics.median(cold)
        verdicts.append(verdict(median, SETUP_COLD_SECONDS, higher_is_better=False))
        print("cold setup() in an empty folder:", ", ".join(f"{t:.2f} s" for t in cold))
        print(f"cold setup() median {median:.2f} s (budget {SETUP_COLD_SECONDS:g} s): "
              f"{verdicts[-1]}")  # fmt: skip
    return 1 if failed(verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
