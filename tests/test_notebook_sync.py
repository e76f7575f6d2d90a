"""book/NN-*.md (the sources) and notebooks/NN-*.ipynb (for Colab and Binder) agree.

Regenerate the notebooks with ``make notebooks`` after editing a chapter. The notebooks are
jupytext's reading of the chapters, rewritten for Jupyter and Colab by
``book/_ext/myst_to_notebook.py``; the tests here rebuild them and compare.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path

import jupytext
import pytest
import yaml
from sphinx_external_toc.parsing import parse_toc_yaml

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = ROOT / "notebooks"
CHAPTER_GLOB = "[0-9][0-9]-*.md"
CHAPTERS = sorted(BOOK.glob(CHAPTER_GLOB))
# `pip install ... git+https://github.com/<owner>/<repo>[.git][@ref]` in a setup cell.
PIP_GIT = re.compile(
    r"pip install\b[^\n]*?git\+(https://[^\s\"'@]+?)(?:\.git)?(?:@[^\s\"']+)?[\"'\s]"
)
FIX = "run `make notebooks`"

_spec = importlib.util.spec_from_file_location(
    "myst_to_notebook", BOOK / "_ext" / "myst_to_notebook.py"
)
export = sys.modules.setdefault("myst_to_notebook", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(export)
BOOK_INFO = export.load_book(BOOK)


def _ids(paths: list[Path]) -> list[str]:
    return [p.stem for p in paths]


def _config() -> dict:
    return yaml.safe_load((BOOK / "_config.yml").read_text())


def toc_files() -> list[str]:
    """Every page of book/_toc.yml, in order, as Jupyter Book's own toc parser reads it."""
    toc = yaml.safe_load((BOOK / "_toc.yml").read_text())
    assert toc.get("format") == "jb-book", "book/_toc.yml must use the jb-book format"
    return list(parse_toc_yaml(BOOK / "_toc.yml").keys())


def _cells(nb) -> list[tuple[str, str, dict]]:
    return [(c.cell_type, c.source.strip(), dict(c.metadata)) for c in nb.cells]


def test_the_introduction_is_a_chapter():
    assert (BOOK / "00-introduction.md").is_file()
    assert toc_files()[0] == "00-introduction"


def test_every_toc_entry_exists():
    missing = [
        f
        for f in toc_files()
        if not any((BOOK / f"{f}{ext}").is_file() for ext in (".md", ".ipynb"))
    ]
    assert not missing, f"listed in book/_toc.yml but not in book/: {missing}"


def test_every_chapter_is_in_the_toc():
    # only_build_toc_files: a chapter missing from the toc would silently not be built.
    listed = set(toc_files())
    assert not [p.stem for p in CHAPTERS if p.stem not in listed]


def test_no_orphan_notebooks():
    orphans = [
        p.name for p in sorted(NOTEBOOKS.glob("*.ipynb")) if not (BOOK / f"{p.stem}.md").is_file()
    ]
    assert not orphans, f"notebooks without a book/ source: {orphans} (delete them)"


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_notebook_is_the_export_of_its_chapter(md: Path):
    """notebooks/X.ipynb == myst_to_notebook(jupytext(book/X.md)), byte for byte."""
    ipynb = NOTEBOOKS / f"{md.stem}.ipynb"
    assert ipynb.is_file(), f"{ipynb.relative_to(ROOT)} is missing: {FIX}"
    expected = export.notebook_text(md, BOOK_INFO)
    actual = ipynb.read_text()
    if actual == expected:
        return
    a, b = jupytext.reads(expected, fmt="ipynb"), jupytext.reads(actual, fmt="ipynb")
    assert len(a.cells) == len(b.cells), (
        f"{md.name} exports to {len(a.cells)} cells, {ipynb.name} has {len(b.cells)}: {FIX}"
    )
    for i, (x, y) in enumerate(zip(a.cells, b.cells, strict=True)):
        assert x.cell_type == y.cell_type, f"cell {i}: type {x.cell_type} vs {y.cell_type}: {FIX}"
        assert x.source == y.source, f"cell {i} differs: {FIX}"
        assert x.metadata == y.metadata, f"cell {i}: metadata differs: {FIX}"
        assert x.get("id") == y.get("id"), f"cell {i}: id differs: {FIX}"
    assert a.metadata == b.metadata, f"{ipynb.name}: notebook metadata differs: {FIX}"
    pytest.fail(f"{ipynb.name} is not byte-identical to the export of {md.name}: {FIX}")


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_export_keeps_every_cell_of_the_chapter(md: Path):
    """The export adds caption cells and drops label-only cells, nothing else: every code
    cell is there with its source (a check cell gains a ``# @title`` line) and its tags."""
    source = jupytext.read(md)
    twin = jupytext.read(NOTEBOOKS / f"{md.stem}.ipynb")
    code_a = [c for c in source.cells if c.cell_type == "code"]
    code_b = [c for c in twin.cells if c.cell_type == "code"]
    assert len(code_a) == len(code_b), f"{md.name}: {len(code_a)} code cells vs {len(code_b)}"
    for i, (x, y) in enumerate(zip(code_a, code_b, strict=True)):
        assert x.metadata.get("tags", []) == y.metadata.get("tags", []), f"code cell {i}: tags"
        body = y.source
        if "remove-cell" in x.metadata.get("tags", []):
            title, _, rest = y.source.partition("\n")
            assert title.startswith("# @title "), f"code cell {i}: check cell without a title"
            first = x.source.split("\n", 1)[0].lstrip("#").strip()
            body = ("# " + first + "\n" + rest) if title == f"# @title {first}" else rest
        assert body == x.source, f"{md.name} code cell {i}: the notebook runs other code: {FIX}"
    assert source.metadata.get("kernelspec", {}).get("name") == "python3"
    assert twin.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_notebook_stores_no_outputs(md: Path):
    ipynb = NOTEBOOKS / f"{md.stem}.ipynb"
    assert ipynb.is_file(), f"{ipynb.relative_to(ROOT)} is missing: {FIX}"
    nb = json.loads(ipynb.read_text())
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{ipynb.name} cell {i} stores outputs: {FIX}"
            assert cell.get("execution_count") is None, f"{ipynb.name} cell {i}: execution count"


@pytest.mark.parametrize("md", CHAPTERS, ids=_ids(CHAPTERS))
def test_colab_install_uses_the_book_repository(md: Path):
    repository = _config()["repository"]["url"].rstrip("/")
    code = [c for c in jupytext.read(md).cells if c.cell_type == "code"]
    assert code, f"{md.name} has no code cell: the first one must be the setup cell"
    first = code[0].source
    assert '"google.colab" in sys.modules' in first, f"{md.name}: first cell is not the setup cell"
    urls = [u.rstrip("/") for u in PIP_GIT.findall(first + "\n")]
    assert urls, f"{md.name}: the setup cell has no `pip install ... git+<repository>` line"
    assert urls == [repository], f"{md.name}: installs from {urls}, _config.yml says {repository}"
