"""Every chapter, as a reader opens it in Jupyter, runs to its end, and so do its exercises'
solutions (issue 17).

Each notebook of ``notebooks/`` is executed from a fresh kernel with the code of its
solutions (the ``python`` blocks inside ``<details><summary>Solution</summary>``, which the
export makes of the chapter's ``{dropdown} Solution``) appended as cells after the chapter's
own: a solution may use anything the chapter defined, as a reader who tries it after reading
the chapter would. The check cells run too (they are the chapter's cells), so this is the
demo pass of ``make test``; ``make test`` then builds the site, which executes the chapters
once more as the site shows them.

Run it with ``pytest -m chapters tests/test_solutions.py``; ``make test`` does.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
SOLUTION = re.compile(r"<summary>\s*Solution")
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
TIMEOUT = int(os.environ.get("NBVAL_CELL_TIMEOUT", "900"))

pytestmark = pytest.mark.chapters


def solutions(nb: nbformat.NotebookNode) -> list[str]:
    """The code of every solution of a notebook, in order."""
    code = []
    for cell in nb.cells:
        if cell.cell_type == "markdown" and SOLUTION.search(cell.source):
            code += [block.strip() for block in PYTHON_BLOCK.findall(cell.source)]
    return code


def test_the_solutions_are_found():
    """Chapters 1-7 have code in their solutions (chapter 0's are worked in prose), so a
    change of the export that hid them from this test would fail here."""
    counts = {p.stem[:2]: len(solutions(nbformat.read(p, as_version=4))) for p in NOTEBOOKS}
    assert sorted(counts) == [f"{i:02d}" for i in range(8)]
    assert all(counts[f"{i:02d}"] >= 1 for i in range(1, 8)), counts


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_chapter_and_its_solutions_run(path):
    nb = nbformat.read(path, as_version=4)
    code = solutions(nb)
    for i, source in enumerate(code, 1):
        cell = nbformat.v4.new_code_cell(f"# solution {i} of {path.name}\n{source}")
        cell.id = f"solution-{i}"
        nb.cells.append(cell)
    client = NotebookClient(
        nb,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError naming the cell that failed
