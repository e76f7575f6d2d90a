"""Turn the book's MyST chapters (``book/NN-*.md``) into notebooks that render in Jupyter and Colab.

``make notebooks`` runs this script. It reads each chapter with jupytext (the same
``md:myst`` reading as ``jupytext --to ipynb``) and rewrites what only MyST understands:

========================================  ================================================
MyST (the site)                           notebook (Jupyter, JupyterLab, Colab, nbconvert)
========================================  ================================================
``:::{dropdown} Solution``                ``<details><summary>Solution</summary>`` (closed)
``:::{admonition} Title``, ``{note}``...  a block quote that opens with the title in bold
``{math}`` directive, ``{math}`` role     ``$$...$$``, ``$...$``
``{glue:text}`name``` (a run's number)    ``name`` in code font: the ``name = value`` line
                                          that ``helpers.glue.glue`` printed above
``(label)=`` before a heading             dropped; links to it point at the heading anchor
``[text](05-evaluation)``, ``{doc}``      ``[text](05-evaluation.ipynb)``
``[text](label)``, ``{ref}``              ``[text](#Heading-text)``, or ``NN-name.ipynb#...``
definition list (``Term`` / ``: def``)    a bullet list with the term in bold
figure caption (``mystnb: figure:``)      a markdown cell right under the figure's cell
check cell (tag ``remove-cell``)          source folded: ``jupyter.source_hidden`` (Jupyter)
                                          and ``cellView: form`` + ``# @title`` (Colab)
========================================  ================================================

Links between chapters are relative (``05-evaluation.ipynb``): the notebooks sit side by
side in ``notebooks/``, so the link opens the other chapter in Jupyter, JupyterLab and Binder,
and Colab resolves a relative link to a sibling notebook to that notebook's Colab page.
Under each title, an "Open in Colab" and a "Launch Binder" link, built (by
``colab_badge.launch_urls``, as on the site) from the one ``repository:`` setting of
``book/_config.yml``, open the chapter from the repository. Links to pages of the book that
have no notebook (the workshop route) and to other files of the repository open them on
GitHub, from the same setting, so they work in Colab too; images stay relative.

Anything MyST-only that this script does not know (a new directive or role, a link to a page
or label that does not exist) is an error naming the chapter and the line, never left in.

Cell ids are derived from the cell's content, so the output is a pure function of the
chapter: ``tests/test_notebook_sync.py`` rebuilds every notebook and compares the bytes.

Usage: ``python book/_ext/myst_to_notebook.py [--check] [--out notebooks] book/NN-*.md``
"""

from __future__ import annotations

import argparse
import hashlib
import posixpath
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from colab_badge import github_parts, launch_urls  # noqa: E402  (the site's own URLs)

BOOK = Path(__file__).resolve().parents[1]
CHAPTER_GLOB = "[0-9][0-9]-*.md"

# Admonition directives and the title each gets when it has none of its own.
ADMONITIONS = {
    "note": "Note",
    "tip": "Tip",
    "hint": "Hint",
    "important": "Important",
    "attention": "Attention",
    "caution": "Caution",
    "warning": "Warning",
    "danger": "Danger",
    "error": "Error",
    "seealso": "See also",
    "admonition": None,  # takes its title from the argument, which MyST requires
}
DIRECTIVES = set(ADMONITIONS) | {"dropdown", "math"}
ROLES = {"ref", "doc", "math", "eq", "glue:text"}
CAPTION_PREFIX = "**Figure.**"
CHECK_TITLE = "Check"

CODE_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})(.*)$")
DIRECTIVE_OPEN = re.compile(r"^(\s*)(:{3,}|`{3,})\{([A-Za-z][\w-]*)\}\s*(.*?)\s*$")
LABEL_LINE = re.compile(r"^\(([\w.:-]+)\)=\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
OPTION = re.compile(r"^\s*:([\w-]+):(.*)$")
# Inline: a role, an inline code span (left alone), or a (possibly multi-line) link/image.
INLINE = re.compile(
    r"(?P<role>\{(?P<rname>[A-Za-z][\w:-]*)\}`(?P<rtext>[^`]*)`)"
    r"|(?P<code>(?P<ticks>`+).+?(?P=ticks))"
    r"|(?P<link>(?P<bang>!?)\[(?P<ltext>[^\]]*)\]\((?P<target>[^()\s]+)\))",
    re.S,
)
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


class MystSyntaxError(ValueError):
    """MyST syntax the notebook export does not know how to rewrite."""


@dataclass
class Book:
    """What the rewrite needs to know about the whole book."""

    chapters: list[str]  # docnames with a notebook, e.g. "05-evaluation"
    pages: list[str]  # every page of the book (chapters and others), as docnames
    labels: dict[str, tuple[str, str]]  # label -> (docname, anchor of the heading after it)
    theme_options: dict = field(default_factory=dict)

    def blob_url(self, path: str) -> str:
        """The GitHub page of ``path`` (relative to the repository root) on the book's branch."""
        owner, repo = github_parts(self.theme_options["repository_url"])
        branch = self.theme_options.get("repository_branch") or "main"
        return f"https://github.com/{owner}/{repo}/blob/{branch}/{path}"


def heading_anchor(text: str) -> str:
    """The id Jupyter (and nbconvert) give a markdown heading: its text, spaces as dashes."""
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[*_]{1,2}([^*_]+)[*_]{1,2}", r"\1", text)
    return text.strip().replace(" ", "-")


def _theme_options(config: dict) -> dict:
    """The subset of Jupyter Book's html_theme_options that ``launch_urls`` reads."""
    repository = config.get("repository") or {}
    return {
        "repository_url": repository.get("url"),
        "repository_branch": repository.get("branch", "main"),
        "launch_buttons": config.get("launch_buttons") or {},
    }


def load_book(book_dir: Path = BOOK) -> Book:
    """Chapters, pages and ``(label)=`` targets of the book in ``book_dir``."""
    config = yaml.safe_load((book_dir / "_config.yml").read_text())
    chapters = sorted(p.stem for p in book_dir.glob(CHAPTER_GLOB))
    pages = sorted({p.stem for p in book_dir.glob("*.md")} - {"CHAPTER_TEMPLATE", "README"})
    labels: dict[str, tuple[str, str]] = {}
    for page in pages:
        lines = (book_dir / f"{page}.md").read_text().splitlines()
        for i, line in enumerate(lines):
            match = LABEL_LINE.match(line)
            if not match:
                continue
            following = next((x for x in lines[i + 1 :] if x.strip()), "")
            heading = HEADING.match(following)
            if not heading:
                raise MystSyntaxError(
                    f"{page}.md:{i + 1}: label ({match.group(1)})= must stand right before a "
                    "heading (the notebooks link to the heading's anchor)"
                )
            if match.group(1) in labels:
                raise MystSyntaxError(f"{page}.md:{i + 1}: label {match.group(1)} defined twice")
            labels[match.group(1)] = (page, heading_anchor(heading.group(2)))
    return Book(chapters, pages, labels, _theme_options(config))


# --- markdown ---------------------------------------------------------------------------


def _split_fences(lines: list[str]) -> list[tuple[bool, list[str]]]:
    """Runs of lines: (True, a fenced code block) or (False, anything else)."""
    runs: list[tuple[bool, list[str]]] = []
    i = 0
    while i < len(lines):
        fence = CODE_FENCE.match(lines[i])
        if fence and not fence.group(3).lstrip().startswith("{"):
            marker = fence.group(2)
            end = i + 1
            closing = re.compile(rf"^\s*{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            while end < len(lines) and not closing.match(lines[end]):
                end += 1
            runs.append((True, lines[i : end + 1]))
            i = end + 1
            continue
        if runs and not runs[-1][0]:
            runs[-1][1].append(lines[i])
        else:
            runs.append((False, [lines[i]]))
        i += 1
    return runs


class _Converter:
    def __init__(self, book: Book, docname: str) -> None:
        self.book = book
        self.docname = docname

    def error(self, message: str) -> MystSyntaxError:
        return MystSyntaxError(f"{self.docname}.md: {message}")

    # Links and roles ----------------------------------------------------------------------

    def page_link(self, page: str, anchor: str = "") -> str:
        suffix = f"#{anchor}" if anchor else ""
        if page == self.docname and anchor:
            return suffix
        if page in self.book.chapters:
            return f"{page}.ipynb{suffix}"
        return self.book.blob_url(f"book/{page}.md") + suffix

    def resolve(self, target: str, image: bool = False) -> str:
        """The notebook's link for a MyST link target."""
        if SCHEME.match(target) or target.startswith("#"):
            return target
        path, _, anchor = target.partition("#")
        stem = re.sub(r"\.(md|ipynb)$", "", path.removeprefix("./"))
        if stem in self.book.pages and "/" not in stem:
            return self.page_link(stem, anchor)
        if not anchor and path in self.book.labels:
            return self.page_link(*self.book.labels[path])
        if image or "/" in path or "." in Path(path).name:
            # A file, relative to book/ on the site. An image stays relative (notebooks/ is
            # book/'s sibling); a link opens the file on GitHub, which works in Colab too.
            if image:
                return target if path.startswith("../") else f"../book/{target}"
            in_repo = posixpath.normpath(f"book/{path}")
            if in_repo.startswith(".."):
                raise self.error(f"link target {target!r} is outside the repository")
            return self.book.blob_url(in_repo) + (f"#{anchor}" if anchor else "")
        raise self.error(f"link target {target!r} is neither a page, a label nor a file")

    def role(self, name: str, text: str) -> str:
        if name not in ROLES:
            raise self.error(f"role {{{name}}} is not supported in notebooks: {text!r}")
        if name == "math":
            return f"${text}$"
        if name == "glue:text":  # the value is printed by its cell as `name = value`
            key = text.split(":", 1)[0].strip()
            if not key.isidentifier():
                raise self.error(f"{{glue:text}} needs a name: {text!r}")
            return f"`{key}`"
        if name == "eq":
            raise self.error("{eq} references need numbered equations, which notebooks lack")
        explicit = re.fullmatch(r"(?s)(.*?)\s*<([^<>]+)>", text)
        title, target = (explicit.group(1), explicit.group(2)) if explicit else (None, text)
        target = target.strip()
        if name == "doc":
            page = target.removeprefix("./").removesuffix(".md")
            if page not in self.book.pages:
                raise self.error(f"{{doc}} to a page that does not exist: {target!r}")
            return f"[{title or page}]({self.page_link(page)})"
        if target not in self.book.labels:
            raise self.error(f"{{ref}} to an unknown label: {target!r}")
        page, anchor = self.book.labels[target]
        return f"[{title or anchor.replace('-', ' ')}]({self.page_link(page, anchor)})"

    def inline(self, text: str) -> str:
        def replace(match: re.Match) -> str:
            if match.group("role"):
                return self.role(match.group("rname"), match.group("rtext"))
            if match.group("code"):
                return match.group(0)
            target = self.resolve(match.group("target"), image=bool(match.group("bang")))
            return f"{match.group('bang')}[{match.group('ltext')}]({target})"

        return INLINE.sub(replace, text)

    # Blocks -------------------------------------------------------------------------------

    def text_block(self, lines: list[str]) -> list[str]:
        """Labels, definition lists and inline syntax of lines outside code fences."""
        out: list[str] = []
        i = 0
        while i < len(lines):
            line = lines[i]
            if LABEL_LINE.match(line):
                i += 1
                continue
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if line.strip() and not line.startswith((" ", ":")) and nxt.startswith(": "):
                # Definition list: "Term" then ": definition" with indented continuation lines.
                out.append(f"- **{line.strip()}**: {nxt[2:].strip()}")
                i += 2
                while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                    out.append("  " + lines[i].strip())
                    i += 1
                continue
            out.append(line)
            i += 1
        return self.inline("\n".join(out)).split("\n")

    def directive(self, name: str, argument: str, body: list[str], where: int) -> list[str]:
        if name not in DIRECTIVES:
            raise self.error(
                f"line {where}: directive {{{name}}} is not supported in notebooks; extend "
                "book/_ext/myst_to_notebook.py or use another construct"
            )
        options: dict[str, str] = {}
        if body and body[0].strip() == "---":  # YAML options block
            end = next((k for k in range(1, len(body)) if body[k].strip() == "---"), None)
            if end is None:
                raise self.error(f"line {where}: unterminated option block")
            options = yaml.safe_load("\n".join(body[1:end])) or {}
            body = body[end + 1 :]
        while body and OPTION.match(body[0]):
            key, value = OPTION.match(body[0]).groups()
            options[key] = value.strip()
            body = body[1:]
        content = self.convert(body)
        while content and not content[0].strip():
            content.pop(0)
        while content and not content[-1].strip():
            content.pop()
        if name == "math":
            return ["$$", *content, "$$"]
        if name == "dropdown":
            opened = " open" if "open" in options else ""
            summary = self.inline(argument) or "Details"
            return [
                f"<details{opened}>",
                f"<summary>{summary}</summary>",
                "",
                *content,
                "",
                "</details>",
            ]
        title = argument or ADMONITIONS[name]
        if not title:
            raise self.error(f"line {where}: {{admonition}} needs a title")
        # Jupyter finds $$...$$ in the cell's raw text, before markdown: a display equation
        # spread over quoted lines would carry the "> " prefixes into the TeX. One line each.
        body_text = re.sub(
            r"\$\$(.+?)\$\$",
            lambda m: "$$" + " ".join(m.group(1).split()) + "$$",
            "\n".join(content),
            flags=re.S,
        )
        quoted = [f"> {line}" if line.strip() else ">" for line in body_text.split("\n")]
        return [f"> **{self.inline(title)}**", ">", *quoted]

    def convert(self, lines: list[str], offset: int = 0) -> list[str]:
        """Rewrite MyST markdown (a cell, or a directive's body) into plain markdown."""
        out: list[str] = []
        pending: list[str] = []
        i = 0

        def flush() -> None:
            for is_code, run in _split_fences(pending):
                out.extend(run if is_code else self.text_block(run))
            pending.clear()

        in_code: re.Pattern | None = None
        while i < len(lines):
            line = lines[i]
            if in_code is not None:
                pending.append(line)
                in_code = None if in_code.match(line) else in_code
                i += 1
                continue
            opening = DIRECTIVE_OPEN.match(line)
            fence = CODE_FENCE.match(line)
            if fence and not opening:
                marker = fence.group(2)
                in_code = re.compile(rf"^\s*{re.escape(marker[0])}{{{len(marker)},}}\s*$")
                pending.append(line)
                i += 1
                continue
            if not opening:
                pending.append(line)
                i += 1
                continue
            flush()
            marker, name, argument = opening.group(2), opening.group(3), opening.group(4)
            closing = re.compile(rf"^\s*{re.escape(marker[0])}{{{len(marker)},}}\s*$")
            end, inner_code = i + 1, None
            while end < len(lines):
                if inner_code is not None:
                    inner_code = None if inner_code.match(lines[end]) else inner_code
                elif closing.match(lines[end]):
                    break
                elif (inner := CODE_FENCE.match(lines[end])) and not DIRECTIVE_OPEN.match(
                    lines[end]
                ):
                    # A code block inside the directive: its lines are not closing fences.
                    tick = inner.group(2)
                    if tick[0] != marker[0] or len(tick) < len(marker):
                        inner_code = re.compile(rf"^\s*{re.escape(tick[0])}{{{len(tick)},}}\s*$")
                end += 1
            if end == len(lines):
                raise self.error(f"line {offset + i + 1}: {{{name}}} is never closed")
            out.extend(self.directive(name, argument, lines[i + 1 : end], offset + i + 1))
            i = end + 1
        flush()
        return out

    def markdown(self, source: str) -> str:
        return "\n".join(self.convert(source.split("\n"))).strip("\n")


# --- cells and notebooks ----------------------------------------------------------------


def _cell_id(cell_type: str, source: str, seen: set[str]) -> str:
    digest = hashlib.sha1(f"{cell_type}\n{source}".encode()).hexdigest()[:8]
    cell_id, n = digest, 1
    while cell_id in seen:
        n += 1
        cell_id = f"{digest}-{n}"
    seen.add(cell_id)
    return cell_id


def fold_check_cell(cell) -> None:
    """A ``remove-cell`` check: source folded in Jupyter, a titled form in Colab.

    Outputs stay visible, so a check that fails shows its error; a passing check prints
    nothing. nbval executes the cell like any other (metadata does not skip cells).
    """
    lines = cell.source.split("\n")
    first = lines[0].strip()
    if first.startswith("# @title") or first.startswith("#@title"):
        pass
    elif first.startswith("#") and not first.startswith("#!"):
        lines[0] = "# @title " + first.lstrip("#").strip()
    else:
        lines.insert(0, f"# @title {CHECK_TITLE}")
    cell.source = "\n".join(lines)
    cell.metadata["cellView"] = "form"
    cell.metadata.setdefault("jupyter", {})["source_hidden"] = True


def caption_of(cell) -> str | None:
    figure = (cell.metadata.get("mystnb") or {}).get("figure") or {}
    caption = figure.get("caption")
    return " ".join(str(caption).split()) if caption else None


def launch_line(book: Book, docname: str) -> str | None:
    urls = launch_urls(book.theme_options, docname)
    links = []
    if "colab" in urls:
        links.append(f"[Open in Colab]({urls['colab']})")
    if "binder" in urls:
        links.append(f"[Launch Binder]({urls['binder']})")
    return " · ".join(links) or None


def transform(nb, docname: str, book: Book):
    """The notebook of chapter ``docname`` for Jupyter and Colab, from jupytext's reading."""
    converter = _Converter(book, docname)
    cells = []
    titled = False
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = converter.markdown(cell.source)
            if not cell.source.strip():
                continue  # a cell that held only a label
            if not titled:
                lines = cell.source.split("\n")
                if lines[0].startswith("# ") and (line := launch_line(book, docname)):
                    cell.source = "\n".join([lines[0], "", line, *lines[1:]])
                titled = True
            cells.append(cell)
            continue
        cells.append(cell)
        if cell.cell_type != "code":
            continue
        if "remove-cell" in cell.metadata.get("tags", []):
            fold_check_cell(cell)
        caption = caption_of(cell)
        if caption:
            text = converter.markdown(caption)
            cells.append(nbformat.v4.new_markdown_cell(f"{CAPTION_PREFIX} {text}"))
    seen: set[str] = set()
    for cell in cells:
        cell["id"] = _cell_id(cell.cell_type, cell.source, seen)
    nb.cells = cells
    return nb


def notebook_text(md: Path, book: Book | None = None) -> str:
    """The exact text of ``notebooks/<chapter>.ipynb`` for the chapter ``md``."""
    book = book or load_book(md.parent)
    nb = jupytext.read(md)
    nb = transform(nb, md.stem, book)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return jupytext.writes(nb, fmt="ipynb")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("chapters", nargs="+", type=Path, help="book/NN-*.md files")
    parser.add_argument("--out", type=Path, default=BOOK.parent / "notebooks")
    parser.add_argument("--check", action="store_true", help="only report stale notebooks")
    args = parser.parse_args(argv)
    stale = []
    books: dict[Path, Book] = {}
    for md in args.chapters:
        if not md.is_file():
            parser.error(f"{md} does not exist")
        try:
            book = books.get(md.parent.resolve()) or load_book(md.parent)
            books[md.parent.resolve()] = book
            text = notebook_text(md, book)
        except MystSyntaxError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        target = args.out / f"{md.stem}.ipynb"
        if target.is_file() and target.read_text() == text:
            continue
        stale.append(target)
        if not args.check:
            args.out.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
            print(f"{md} -> {target}")
    if args.check and stale:
        print("stale: " + ", ".join(map(str, stale)) + " (run `make notebooks`)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
