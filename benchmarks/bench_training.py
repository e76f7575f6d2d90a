"""Training time per chapter, cold: what chapters 4, 5 and 7 spend in ``helpers.training``.

    PYTHONPATH=. python benchmarks/bench_training.py [--chapters 04 05 07] [--demo_dir DIR]

Each chapter's notebook (``notebooks/NN-*.ipynb``, generated from ``book/``) runs in a fresh
kernel as a reader's Run All does, on the demo cohort (``--demo_dir``, else
``MIL_BOOK_DEMO_DIR``, else ``data/demo``), up to its last training cell: a code cell that
calls one of the functions or classes the chapter imports from ``helpers.training``,
``helpers.loop`` or ``helpers.runs`` (``train_or_load``, ``trained_abmil``, ``EvalTrainer``,
``fit``, ``train_many``, ...). Whatever those entry points
do inside, and whichever of them a chapter calls, the time of those cells is the chapter's
training time, so the benchmark follows the chapters when the training loop changes. The
weights cache (``MIL_BOOK_MODELS_DIR``) is a new empty folder shared by the chapters of one
run, in order, as a reader who reads the book: chapter 4 trains ABMIL, chapter 5 loads it
and trains its baseline, chapter 7 trains its nine models with three seeds.

Prints each chapter's training time against its budget (``benchmarks/budgets.py``: 15 s for
chapters 4 and 5, 60 s for chapter 7 on 2 CPU cores; on a GPU, 20 s for chapter 7) and the
device, and exits with 1 when a budget is missed by more than the noise or a chapter fails.
A cell still running after ``--limit`` (2) times its chapter's budget (at least 60 s) is
stopped and counts as a failure, so that ``make bench`` stays short when a budget is far off.
On a machine with a GPU the chapters use it; ``CUDA_VISIBLE_DEVICES=`` times the CPU.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from budgets import TRAINING_SECONDS, TRAINING_SECONDS_GPU, failed, verdict  # noqa: E402


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:  # a cell with IPython syntax: not ours to time
        return None


#: The modules whose functions train: the Trainer calls and caching, the loop, many runs.
TRAINING_MODULES = ("helpers.training", "helpers.loop", "helpers.runs")


def training_names(cells: list) -> set[str]:
    """The names a chapter imports from :data:`TRAINING_MODULES` (``as`` names included)."""
    names = set()
    for cell in cells:
        tree = _parse(cell.source)
        for node in ast.walk(tree) if tree else ():
            if isinstance(node, ast.ImportFrom) and node.module in TRAINING_MODULES:
                names.update(alias.asname or alias.name for alias in node.names)
    return names


def calls_any(source: str, names: set[str]) -> bool:
    """Whether ``source`` calls one of ``names`` (``f(...)``)."""
    tree = _parse(source)
    return tree is not None and any(
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in names
        for node in ast.walk(tree)
    )


def training_cells(nb) -> list[int]:
    """Indices of the code cells that call what the chapter imports from helpers.training."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    names = training_names(code)
    return [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and calls_any(cell.source, names)
    ]


def _seconds(cell) -> float:
    timing = cell.metadata.get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        raise RuntimeError("nbclient recorded no timing for a cell")
    parse = datetime.datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def time_chapter(path: Path, env: dict[str, str], timeout: int) -> tuple[float, int, float]:
    """Run ``path`` up to its last training cell; return ``(training seconds, training cells,
    wall seconds of the run)``."""
    nb = nbformat.read(path, as_version=4)
    cells = training_cells(nb)
    if not cells:
        raise RuntimeError(f"{path.name} has no cell that calls helpers.training")
    nb.cells = nb.cells[: cells[-1] + 1]
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", record_timing=True,
            resources={"metadata": {"path": str(path.parent)}},
        )  # fmt: skip
        start = time.perf_counter()
        client.execute()
        wall = time.perf_counter() - start
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return sum(_seconds(nb.cells[i]) for i in cells), len(cells), wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapters", nargs="*", default=sorted(TRAINING_SECONDS))
    parser.add_argument("--demo_dir", type=Path, default=None)
    parser.add_argument(
        "--limit", type=float, default=2.0,
        help="stop a cell after this many times the chapter's budget (at least 60 s; 0: never)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    import torch

    gpu = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if gpu else f"CPU ({os.cpu_count()} cores)"
    budgets = {**TRAINING_SECONDS, **(TRAINING_SECONDS_GPU if gpu else {})}
    demo = args.demo_dir or Path(os.environ.get("MIL_BOOK_DEMO_DIR") or REPO / "data" / "demo")
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="bench-training-") as models:
        env = {"MIL_BOOK_DEMO_DIR": str(Path(demo).resolve()), "MIL_BOOK_MODELS_DIR": models}
        for chapter in args.chapters:
            (path,) = sorted((REPO / "notebooks").glob(f"{chapter}-*.ipynb"))
            budget = budgets.get(chapter)
            limit = max(args.limit * (budget or 0), 60) if args.limit > 0 else 24 * 3600
            try:
                seconds, n, wall = time_chapter(path, env, int(limit))
            except CellTimeoutError:
                verdicts.append("FAIL")
                print(f"{path.stem}: a cell ran past {limit:.0f} s, {args.limit:g} times the "
                      f"budget of {budget} s, and was stopped: FAIL", flush=True)  # fmt: skip
                continue
            except (CellExecutionError, RuntimeError) as error:
                verdicts.append("FAIL")
                print(f"{path.stem}: FAILED\n{str(error)[-2000:]}", flush=True)
                continue
            verdicts.append(verdict(seconds, budget, False) if budget else "no budget")
            print(f"{path.stem}: training {seconds:.1f} s in {n} cell(s) on {device} "
                  f"(budget {budget or '-'} s): {verdicts[-1]}; the chapter up to there "
                  f"{wall:.1f} s", flush=True)  # fmt: skip
    return 1 if failed(verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
