"""``python -m helpers.demo``: the demo cohort's command line."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from helpers.demo.build import default_out, make_cohort
from helpers.demo.fast_start import PACKED, pack_arrays
from helpers.demo.plan import CohortError

USAGE = "The demo cohort: CAMELYON16 in miniature, made locally and deterministically."


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
    """Run the command line on ``argv``; return the exit status (2: a clear error)."""
    parser = argparse.ArgumentParser(prog="python -m helpers.demo", description=USAGE)
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


def _write_error_message(err: Exception, out: str | None) -> str:
    """What a failed write (a full disk, most often) means for the cohort: every file is
    written to a temporary name and renamed, so nothing half-written is left."""
    root = Path(out if out is not None else default_out()).expanduser()
    return (
        f"{err}\nNothing half-written is left in {root}: each file is written whole or not at "
        "all, and the slides finished so far are kept. Free some space (the full cohort "
        "takes about 1.1 GB) or choose another --out, then run the same command again to "
        "finish."
    )
