"""book/NN-*.md (the sources) and notebooks/NN-*.ipynb (for Colab and Binder) agree.

Regenerate the notebooks with ``make notebooks`` after editing a chapter.
"""

from __future__ import annotations

import json
import re
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
def test_notebook_has_the_same_cells(md: Path):
    ipynb = NOTEBOOKS / f"{md.stem}.ipynb"
    assert ipynb.is_file(), f"{ipynb.relative_to(ROOT)} is missing: {FIX}"
    source, twin = jupytext.read(md), jupytext.read(ipynb)
    a, b = _cells(source), _cells(twin)
    assert len(a) == len(b), f"{md.name}: {len(a)} cells, {ipynb.name}: {len(b)}: {FIX}"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        assert x[0] == y[0], f"cell {i}: type {x[0]} vs {y[0]}: {FIX}"
        assert x[1] == y[1], f"cell {i} differs: {FIX}"
        assert x[2].get("tags", []) == y[2].get("tags", []), f"cell {i}: tags differ: {FIX}"
        assert x[2] == y[2], f"cell {i}: metadata differs: {FIX}"
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
