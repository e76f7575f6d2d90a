"""The notebooks render without MyST: in Jupyter, Colab and an nbconvert HTML export.

``book/_ext/myst_to_notebook.py`` (run by ``make notebooks``) rewrites the MyST-only syntax
of the chapters. These tests check its rules on small inputs, check that no MyST-only syntax
is left in any notebook, that every link of a notebook leads somewhere, that the HTML export
of each notebook shows the solutions collapsed and each caption right under its figure, and
that nbval still collects every code cell (check cells included).
"""

from __future__ import annotations

import base64
import importlib.util
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import jupytext
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK_PATHS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
IDS = [p.stem for p in NOTEBOOK_PATHS]

_spec = importlib.util.spec_from_file_location(
    "myst_to_notebook", BOOK / "_ext" / "myst_to_notebook.py"
)
export = sys.modules.setdefault("myst_to_notebook", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(export)

# MyST-only syntax, as a notebook's markdown would show it verbatim.
MYST_ONLY = {
    "colon-fence directive": re.compile(r"^\s*:{3,}", re.M),
    "backtick directive": re.compile(r"^\s*(`{3,}|~{3,})\s*\{", re.M),
    "role": re.compile(r"\{[A-Za-z][\w:-]*\}`"),
    "label target": re.compile(r"^\s*\([\w.:-]+\)=\s*$", re.M),
    "definition list": re.compile(r"^: ", re.M),
    "substitution": re.compile(r"\{\{[^}]*\}\}"),
    "MyST comment": re.compile(r"^%[^%]", re.M),
    "jupytext cell break": re.compile(r"^\+\+\+", re.M),
}
LINK = re.compile(r"!?\[[^\]]*\]\(([^()\s]+)\)")
CODE_BLOCK = re.compile(r"^(`{3,}|~{3,})[^\n]*\n.*?^\1\s*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+).+?\1", re.S)


def _prose(markdown: str) -> str:
    """A markdown cell without its code blocks and inline code (which may show anything)."""
    return INLINE_CODE.sub("", CODE_BLOCK.sub("", markdown))


def _book(**kwargs) -> export.Book:
    defaults = dict(
        chapters=["01-one", "02-two"],
        pages=["01-one", "02-two", "workshop"],
        labels={"my-label": ("02-two", "A-heading")},
        theme_options={"repository_url": "https://github.com/o/r", "launch_buttons": {}},
    )
    return export.Book(**{**defaults, **kwargs})


def md(text: str, doc: str = "01-one") -> str:
    return export._Converter(_book(), doc).markdown(text)


# --- the rules, on small inputs ----------------------------------------------------------


def test_dropdown_becomes_a_closed_details_block_with_its_markdown():
    out = md(":::{dropdown} Solution\nThe answer is $x^2$.\n\n```python\nprint(1)\n```\n:::")
    assert out.startswith("<details>\n<summary>Solution</summary>\n\n")
    assert out.endswith("\n\n</details>")
    assert "The answer is $x^2$." in out and "```python\nprint(1)\n```" in out
    assert "<details open>" in md(":::{dropdown} Shown\n:open:\ntext\n:::")


def test_admonitions_become_titled_block_quotes():
    assert md(":::{admonition} Exercise 1: sums\nAdd.\n\nThen more.\n:::") == (
        "> **Exercise 1: sums**\n>\n> Add.\n>\n> Then more."
    )
    assert md("```{note}\nKeep X first.\n```") == "> **Note**\n>\n> Keep X first."
    assert md(":::{warning}\n:class: dropdown\nCareful.\n:::").startswith("> **Warning**")


def test_display_math_in_an_admonition_stays_on_one_quoted_line():
    out = md(":::{note}\nSo\n$$\na = b\n+ c\n$$\nholds.\n:::")
    assert out == "> **Note**\n>\n> So\n> $$a = b + c$$\n> holds."


def test_nested_directives_and_fences_inside_them():
    out = md("::::{admonition} Outer\n:::{dropdown} Inner\n```\n:::\n```\n:::\n::::")
    assert out.startswith("> **Outer**") and "> <details>" in out
    assert "> ```\n> :::\n> ```" in out  # the ::: inside the code block is code, kept


def test_code_blocks_are_left_alone():
    text = "```python\n(label)=\n[a](02-two)\n{ref}`x`\n:::{note}\n```"
    assert md(text) == text


def test_links_to_chapters_labels_pages_and_files():
    assert md("[two](02-two)") == "[two](02-two.ipynb)"
    assert md("[two](02-two.md#A-heading)") == "[two](02-two.ipynb#A-heading)"
    assert md("[here](my-label)", doc="02-two") == "[here](#A-heading)"
    assert md("[there](my-label)") == "[there](02-two.ipynb#A-heading)"
    assert md("[route](workshop)") == "[route](https://github.com/o/r/blob/main/book/workshop.md)"
    assert (
        md("[code](../helpers/data.py)")
        == "[code](https://github.com/o/r/blob/main/helpers/data.py)"
    )
    assert md("![plot](img/a.png)") == "![plot](../book/img/a.png)"
    assert md("[web](https://x.org/02-two)") == "[web](https://x.org/02-two)"
    assert md("`[not a link](02-two)`") == "`[not a link](02-two)`"
    assert md("[multi\nline](02-two)") == "[multi\nline](02-two.ipynb)"


def test_roles():
    assert md("{ref}`my-label`") == "[A heading](02-two.ipynb#A-heading)"
    assert md("{ref}`the heading <my-label>`") == "[the heading](02-two.ipynb#A-heading)"
    assert md("{doc}`02-two`") == "[02-two](02-two.ipynb)"
    assert md("{math}`x^2`") == "$x^2$"


def test_labels_and_definition_lists():
    assert md("(my-label)=\n## A heading") == "## A heading"
    assert md("Time\n: Costs hours\n  per slide.\n\nNext") == (
        "- **Time**: Costs hours\n  per slide.\n\nNext"
    )


@pytest.mark.parametrize(
    "text",
    [
        ":::{figure} x.png\n:::",  # unknown directive
        "{numref}`fig-x`",  # unknown role
        "[gone](03-three)",  # a page that does not exist
        "{ref}`no-such-label`",
        ":::{note}\nnever closed",
    ],
)
def test_unknown_myst_is_an_error_not_left_in(text: str):
    with pytest.raises(export.MystSyntaxError, match="01-one.md"):
        md(text)


def test_check_cells_fold_and_captions_follow_their_figure():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 1. One\n\nText."),
        nbformat.v4.new_code_cell(
            "plot()", metadata={"mystnb": {"figure": {"caption": "A |\n[b](02-two)"}}}
        ),
        nbformat.v4.new_code_cell(
            "# Check: it holds.\nassert True", metadata={"tags": ["remove-cell"]}
        ),
        nbformat.v4.new_code_cell("assert 1", metadata={"tags": ["remove-cell"]}),
    ]
    out = export.transform(nb, "01-one", _book()).cells
    assert (
        "[Open in Colab](https://colab.research.google.com/github/o/r/blob/main/" in out[0].source
    )
    assert [c.cell_type for c in out] == ["markdown", "code", "markdown", "code", "code"]
    assert out[2].source == "**Figure.** A | [b](02-two.ipynb)"
    assert out[3].source == "# @title Check: it holds.\nassert True"
    assert out[3].metadata["cellView"] == "form"
    assert out[3].metadata["jupyter"] == {"source_hidden": True}
    assert out[4].source == "# @title Check\nassert 1"
    assert len({c.id for c in out}) == len(out)


# --- the notebooks ------------------------------------------------------------------------


def test_there_are_notebooks():
    assert len(NOTEBOOK_PATHS) == len(list(BOOK.glob("[0-9][0-9]-*.md"))) >= 8


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_no_myst_only_syntax_in_markdown(path: Path):
    nb = nbformat.read(path, as_version=4)
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        prose = _prose(cell.source)
        found += [f"cell {i}: {kind}" for kind, rx in MYST_ONLY.items() if rx.search(prose)]
        # A display equation opened on a quoted line must close on it (see the export).
        quoted = [line for line in prose.splitlines() if line.startswith(">")]
        found += [f"cell {i}: display math over quoted lines" for q in quoted if q.count("$$") % 2]
    assert not found, f"{path.name}: MyST-only syntax left (run `make notebooks`): {found}"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_every_link_leads_somewhere(path: Path):
    """Relative links point at files that exist; #anchors at headings of that notebook."""
    nb = nbformat.read(path, as_version=4)
    anchors: dict[Path, set[str]] = {}

    def headings(target: Path) -> set[str]:
        if target not in anchors:
            cells = nbformat.read(target, as_version=4).cells
            text = "\n".join(_prose(c.source) for c in cells if c.cell_type == "markdown")
            found = re.findall(r"^#{1,6}\s+(.*?)\s*$", text, re.M)
            anchors[target] = {export.heading_anchor(h) for h in found}
        return anchors[target]

    checked = 0
    blob = export.load_book(BOOK).blob_url("")  # links into the repository, on GitHub
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        for target in LINK.findall(_prose(cell.source)):
            if target.startswith(blob):
                file = target.removeprefix(blob).partition("#")[0]
                assert (ROOT / file).is_file(), f"{path.name}: {target} names no file"
                checked += 1
                continue
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            assert resolved.is_file(), f"{path.name}: link {target} leads nowhere"
            assert not file or resolved.suffix != ".md" or resolved.parent == BOOK, target
            if anchor:
                assert resolved.suffix == ".ipynb", f"{path.name}: anchor into {file}"
                assert anchor in headings(resolved), f"{path.name}: no heading for {target}"
            checked += 1
    if path.stem != "07-comparing-models":
        assert checked, f"{path.name}: no link to another chapter at all?"


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_nbval_collects_every_code_cell(path: Path):
    """The folded check cells are executed: nbval collects one item per code cell."""
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert not [c for c in code if re.search(r"NBVAL_SKIP|nbval-skip", c.source)]
    assert not [
        c for c in code if {"nbval-skip", "skip-execution"} & set(c.metadata.get("tags", []))
    ]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "--collect-only",
            "-q",
            "--nbval-lax",
            str(path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    items = [line for line in result.stdout.splitlines() if "::Cell " in line]
    assert len(items) == len(code), f"{path.name}: nbval collects {len(items)} of {len(code)}"
    checks = [c for c in code if "remove-cell" in c.metadata.get("tags", [])]
    assert all(c.metadata.get("cellView") == "form" for c in checks)
    assert all(c.metadata.get("jupyter", {}).get("source_hidden") for c in checks)


# --- an HTML export with nbconvert (no MyST anywhere) -------------------------------------

PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e2216bc2"
        "0000000049454e44ae426082"
    )
).decode()


class _Export(HTMLParser):
    """Flat record of the export: cells (with type), images, <details> and their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[tuple[str, str]] = []  # ("cell", type) / ("img", "") / ("text", ..)
        self.details: list[dict] = []
        self._open: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attr = dict(attrs)
        classes = set((attr.get("class") or "").split())
        if tag == "div" and "jp-Cell" in classes:
            kind = "code" if "jp-CodeCell" in classes else "markdown"
            self.events.append(("cell", kind))
        elif tag == "img":
            self.events.append(("img", ""))
        elif tag == "details":
            entry = {"open": "open" in attr, "summary": "", "text": ""}
            self.details.append(entry)
            self._open.append(entry)
        elif tag == "summary" and self._open:
            self._open[-1]["in_summary"] = True

    def handle_endtag(self, tag):
        if tag == "details" and self._open:
            self._open.pop()
        elif tag == "summary" and self._open:
            self._open[-1]["in_summary"] = False

    def handle_data(self, data):
        self.events.append(("text", data))
        for entry in self._open:
            entry["summary" if entry.get("in_summary") else "text"] += data


@pytest.fixture(scope="module")
def html_exporter():
    from nbconvert import HTMLExporter  # the `test` extra installs it

    return HTMLExporter(template_name="lab")


@pytest.mark.parametrize("path", NOTEBOOK_PATHS, ids=IDS)
def test_html_export_collapses_solutions_and_puts_captions_under_figures(path: Path, html_exporter):
    nb = nbformat.read(path, as_version=4)
    source = jupytext.read(BOOK / f"{path.stem}.md")
    captions = [export.caption_of(c) for c in source.cells if c.cell_type == "code"]
    captions = [c for c in captions if c]
    # Give every figure cell the picture it would produce when executed.
    figure_cells = [c for c in nb.cells if c.cell_type == "code" and export.caption_of(c)]
    for cell in figure_cells:
        cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG})]
    body, _ = html_exporter.from_notebook_node(nb)
    page = _Export()
    page.feed(body)

    markdown_text = []
    in_markdown = False
    for kind, value in page.events:
        if kind == "cell":
            in_markdown = value == "markdown"
        elif kind == "text" and in_markdown:
            markdown_text.append(value)
    shown = "\n".join(markdown_text)
    for leftover in (":::", "{dropdown}", "{admonition}", "{note}", "{ref}`", "{doc}`", ")=\n"):
        assert leftover not in _prose(shown), f"{path.name}: the export shows {leftover!r}"

    solutions = [d for d in page.details if d["summary"].strip() == "Solution"]
    n_dropdowns = len(
        re.findall(r"^:{3,}\{dropdown\}", (BOOK / f"{path.stem}.md").read_text(), re.M)
    )
    assert len(solutions) == n_dropdowns
    for d in solutions:
        assert not d["open"], f"{path.name}: a solution is open"
        assert len(d["text"].split()) >= 5, f"{path.name}: an empty solution"

    # Each figure: the cell's <img>, then (before any other cell) the caption's markdown cell.
    assert len(figure_cells) == len(captions)
    events = page.events
    images = [i for i, (kind, _) in enumerate(events) if kind == "img"]
    assert len(images) == len(captions), f"{path.name}: {len(images)} images"
    for img, caption in zip(images, captions, strict=True):
        after = events[img + 1 :]
        cells = [i for i, (kind, _) in enumerate(after) if kind == "cell"]
        assert cells and after[cells[0]] == ("cell", "markdown"), f"{path.name}: no caption cell"
        end = cells[1] if len(cells) > 1 else len(after)
        shown = " ".join(t for kind, t in after[cells[0] : end] if kind == "text")
        words = re.sub(r"\s+", " ", shown)
        first = " ".join(re.sub(r"[$`\[\]]", "", caption).split()[:4])
        assert "Figure." in words, f"{path.name}: caption cell does not say Figure."
        assert first.split()[0] in words, f"{path.name}: caption {first!r} not under its figure"
