"""The built site (book/_build/html), as headless Chromium renders it.

Run after ``make book``; ``make test`` does both. Marked ``site`` so that the unit-test step
(``pytest -m "not site" tests``) leaves it out. It fails, never skips, when the site has not
been built or Chromium is missing.

Chromium runs with every remote host blocked (``--host-resolver-rules``), so the check needs
no internet and sees what a reader without network sees: MathJax is served by the site
itself (``_static/mathjax``), so every equation must come out typeset.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml
from PIL import Image
from sphinx_external_toc.parsing import parse_toc_yaml

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
SITE = BOOK / "_build" / "html"
PAGE_TIMEOUT_S = 120
# Chapters (not the introduction) must show at least one figure made by their code.
FIGURE_DIR = "_images/"
ERROR_CLASSES = {"traceback", "error"}  # MyST-NB classes of error outputs
# Raw TeX delimiters a reader would see if MathJax did not run (outside code).
RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{")


DOCNAMES = list(parse_toc_yaml(BOOK / "_toc.yml").keys())  # every page, in toc order
# Pages that are notebooks (book/NN-*.md, with a notebooks/ twin); others, such as the
# workshop route, are plain pages: no figure made by code, no Colab or Binder badge.
NOTEBOOK_PAGES = [n for n in DOCNAMES if re.fullmatch(r"\d\d-.+", n)]


def _repository() -> tuple[str, str, str, dict]:
    config = yaml.safe_load((BOOK / "_config.yml").read_text())
    url = config["repository"]["url"].rstrip("/")
    owner, repo = urlparse(url).path.strip("/").split("/")[:2]
    return owner, repo.removesuffix(".git"), config["repository"].get("branch", "main"), config


def dump_dom(chromium, page: Path) -> str:
    """The DOM of ``page`` after its scripts ran, from headless Chromium with no network."""
    args = ["--virtual-time-budget=10000", "--dump-dom"]
    dom = chromium(*args, page.as_uri(), timeout=PAGE_TIMEOUT_S)
    assert "<html" in dom, f"chromium returned no DOM for {page.name}"
    return dom


# Text inside these is not prose: code, scripts, styles, and MathJax's own output.
SKIP_TEXT = {"pre", "code", "script", "style", "mjx-container", "textarea"}


class PageParser(HTMLParser):
    """Collects what the checks need from a page: title, h1, images, links, error outputs."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.h1: list[str] = []
        self.images: list[str] = []
        self.links: list[tuple[str, set[str]]] = []
        self.error_outputs = 0
        self.scripts: list[str] = []
        self.math_nodes = 0  # Sphinx's <span|div class="math">: one per equation
        self.mjx_containers = 0  # MathJax 3's output: one per typeset equation
        self.mjx_errors = 0  # TeX that MathJax could not typeset
        self.prose: list[str] = []  # text outside code, scripts and typeset math
        self._skip = 0
        self._in: str | None = None
        self._main_depth = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {k: v or "" for k, v in attrs}
        classes = set(attr.get("class", "").split())
        if tag == "title":
            self._in = "title"
        elif tag == "h1":
            self._in = "h1"
            self.h1.append("")
        elif tag == "img":
            self.images.append(attr.get("src", ""))
        elif tag == "a":
            self.links.append((attr.get("href", ""), classes))
        if tag == "div" and "output" in classes and classes & ERROR_CLASSES:
            self.error_outputs += 1
        if tag == "script":
            self.scripts.append(attr.get("src", ""))
        if tag in ("span", "div") and "math" in classes:
            self.math_nodes += 1
        self.mjx_containers += tag == "mjx-container"
        self.mjx_errors += tag == "mjx-merror"
        self._skip += tag in SKIP_TEXT

    def handle_endtag(self, tag: str) -> None:
        if tag in ("title", "h1"):
            self._in = None
        if tag in SKIP_TEXT and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if self._in == "title":
            self.title += data
        elif self._in == "h1":
            self.h1[-1] += data
        self.text.append(data)
        if not self._skip:
            self.prose.append(data)


def _is_image(path: Path) -> bool:
    if path.suffix.lower() == ".svg":
        head = path.read_bytes()[:512].lstrip().lower()
        return head.startswith((b"<svg", b"<?xml")) and b"<svg" in path.read_bytes()[:4096].lower()
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.width > 0 and image.height > 0


@pytest.fixture(scope="module")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"{SITE.relative_to(ROOT)} is not built: run `make book` first")
    return SITE


@pytest.fixture(scope="module")
def pages(site: Path, chromium):
    """``pages(name)``: the page of a table-of-contents entry, rendered once by Chromium."""
    cache: dict[str, PageParser] = {}

    def render(name: str) -> PageParser:
        if name not in cache:
            page = site / f"{name}.html"
            if not page.is_file():
                pytest.fail(f"{page.relative_to(ROOT)} was not built (is {name} in book/?)")
            parser = PageParser()
            parser.feed(dump_dom(chromium, page))
            cache[name] = parser
        return cache[name]

    return render


def test_index_leads_to_the_introduction(site: Path):
    index = (site / "index.html").read_text()
    assert f"{DOCNAMES[0]}.html" in index


@pytest.mark.parametrize("name", DOCNAMES)
def test_page_renders_with_title_and_no_errors(pages, name: str):
    page = pages(name)
    headings = [h.strip() for h in page.h1 if h.strip()]
    assert headings, f"{name}: no <h1> title"
    title = re.sub(r"[#¶\s]+$", "", headings[0])
    assert title and title in page.title, f"{name}: <title> {page.title!r} lacks {title!r}"
    text = " ".join(page.text)
    assert "Traceback" not in text, f"{name}: a traceback is shown on the page"
    assert page.error_outputs == 0, f"{name}: {page.error_outputs} error output(s)"


@pytest.mark.parametrize("name", DOCNAMES)
def test_images_exist_and_are_images(pages, site: Path, name: str):
    page = pages(name)
    figures = 0
    for src in page.images:
        assert src, f"{name}: <img> without src"
        parsed = urlparse(src)
        assert parsed.scheme in ("", "file"), f"{name}: image from the network: {src}"
        path = (site / unquote(parsed.path)).resolve()
        assert path.is_file(), f"{name}: image {src} does not exist"
        assert path.stat().st_size > 0, f"{name}: image {src} is empty"
        assert _is_image(path), f"{name}: {src} is not a readable image"
        figures += unquote(parsed.path).startswith(FIGURE_DIR)
    if name != DOCNAMES[0] and name in NOTEBOOK_PAGES:
        assert figures >= 1, f"{name}: no figure image (a plot made by a code cell)"


@pytest.mark.parametrize("name", NOTEBOOK_PAGES)
def test_colab_badge_and_binder_link(pages, name: str):
    owner, repo, branch, config = _repository()
    notebook = f"notebooks/{name}.ipynb"
    colab = config["launch_buttons"].get("colab_url", "https://colab.research.google.com")
    expected_colab = f"{colab.rstrip('/')}/github/{owner}/{repo}/blob/{branch}/{notebook}"
    links = pages(name).links
    badges = [href for href, classes in links if "launch-badge-colab" in classes]
    assert badges == [expected_colab], f"{name}: Colab badge {badges}, expected {expected_colab}"
    binderhub = config["launch_buttons"]["binderhub_url"].rstrip("/")
    binder_prefix = f"{binderhub}/v2/gh/{owner}/{repo}/{branch}?urlpath="
    binder = [href for href, _ in links if href.startswith(binder_prefix)]
    # The badge under the title and the theme's launch button, both opening the notebook.
    assert len(binder) >= 2, f"{name}: Binder launch links {binder}"
    assert all(href.endswith(notebook) for href in binder), binder
    for href in binder + badges:
        assert (ROOT / notebook).is_file(), f"{href} points to a missing {notebook}"


def _has_math(name: str) -> bool:
    source = BOOK / f"{name}.md"
    if not source.is_file():
        return False
    text = re.sub(r"```.*?```", "", source.read_text(), flags=re.S)  # code is not math
    return bool(re.search(r"\$[^$\n]+\$|\{math\}", text))


def test_mathjax_is_served_by_the_site(site: Path):
    page = (site / f"{DOCNAMES[0]}.html").read_text()
    sources = re.findall(r'<script[^>]+src="([^"]*mathjax[^"]*)"', page, re.I)
    assert sources, "no MathJax script on the page"
    for src in sources:
        assert urlparse(src).scheme in ("", "file"), f"MathJax comes from the network: {src}"
        assert (site / unquote(urlparse(src).path)).is_file(), f"MathJax script {src} missing"


@pytest.mark.parametrize("name", [n for n in DOCNAMES if _has_math(n)])
def test_equations_are_typeset_offline(pages, name: str):
    """With every remote host blocked, MathJax typesets every equation of the page."""
    page = pages(name)
    assert page.math_nodes > 0, f"{name}: the source has math but the page has none"
    assert page.mjx_containers >= page.math_nodes, (
        f"{name}: {page.mjx_containers} of {page.math_nodes} equations typeset by MathJax"
    )
    assert page.mjx_errors == 0, f"{name}: {page.mjx_errors} equation(s) with TeX errors"
    raw = [m.group(0) for m in RAW_TEX.finditer(" ".join(page.prose))]
    assert not raw, f"{name}: raw TeX shown to the reader: {raw[:5]}"
