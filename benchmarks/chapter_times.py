"""Wall time of every chapter, each from a fresh kernel and an empty data folder.

Each chapter's notebook (``notebooks/NN-*.ipynb``) is executed as a reader's Run All does:
the first cell's ``setup()`` writes the demo's h5 files into a new folder (the fast start),
slides are painted when a chapter first opens them, and models are trained (nothing is cached
from an earlier chapter or run). A chapter that fails stops the script with its error.

    PYTHONPATH=. python benchmarks/chapter_times.py [--chapters 04 05] [--out times.json]

On a machine with a GPU the chapters use it (``helpers.settings.get_device``); run with
``CUDA_VISIBLE_DEVICES=`` for the same machine's CPU. Prints one line per chapter and the
total; ``--out`` also writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]


def run_chapter(path: Path, data_dir: Path, timeout: int = 1800) -> float:
    """Execute one notebook with ``MIL_BOOK_DEMO_DIR=data_dir``; return its wall time (s)."""
    nb = nbformat.read(path, as_version=4)
    os.environ["MIL_BOOK_DEMO_DIR"] = str(data_dir)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="*", default=None, help="e.g. 00 04 (default: all)")
    parser.add_argument("--out", type=Path, default=None, help="write the times as JSON here")
    args = parser.parse_args(argv)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
    if args.chapters:
        notebooks = [p for p in notebooks if p.name[:2] in args.chapters]
    times, failed = {}, {}
    with tempfile.TemporaryDirectory(prefix="chapter-times-") as tmp:
        for path in notebooks:
            try:
                seconds = run_chapter(path, Path(tmp) / path.stem / "demo")
            except CellExecutionError as error:
                failed[path.stem] = str(error)[-2000:]
                print(f"{device} {path.stem:24s} FAILED\n{failed[path.stem]}", flush=True)
                continue
            times[path.stem] = round(seconds, 1)
            print(f"{device} {path.stem:24s} {seconds:7.1f} s", flush=True)
    print(f"{device} {'total':24s} {sum(times.values()):7.1f} s ({len(failed)} failed)")
    if args.out:
        result = {"device": device, "torch": torch.__version__, "seconds": times, "failed": failed}
        args.out.write_text(json.dumps(result, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
