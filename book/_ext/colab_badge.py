"""Launch badges for the chapters: "Open in Colab" and "Launch Binder".

Jupyter Book's launch buttons point at the page's source file, which for this book is a
jupytext ``book/<page>.md``: Colab cannot open that, and a Binder server only opens it as a
notebook when jupytext is set up for it. Every chapter also exists as
``notebooks/<page>.ipynb`` (``make notebooks``), so this extension

* puts an "Open in Colab" and a "Launch Binder" badge under the title of every notebook page,
* points the theme's own Colab and Binder launch buttons at the same ``.ipynb``.

Everything comes from the ``repository:`` and ``launch_buttons:`` sections of
``_config.yml``, which Jupyter Book hands to Sphinx as ``html_theme_options``
(``repository_url``, ``repository_branch``, ``path_to_docs``, ``launch_buttons``).

A notebook page whose ``notebooks/<page>.ipynb`` is missing raises a warning (an error under
``jupyter-book build -W``): run ``make notebooks``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

NOTEBOOKS_DIR = "notebooks"
DEFAULT_COLAB_URL = "https://colab.research.google.com"
BADGE_CLASS = "launch-badges"

_BADGE_STYLE = (
    "display:inline-flex;align-items:stretch;margin:0 .5em .5em 0;border-radius:4px;"
    "overflow:hidden;font:600 12px/20px sans-serif;text-decoration:none;"
)
_LEFT_STYLE = "background:#555;color:#fff;padding:0 6px;"


def _theme_options(app: Sphinx) -> dict[str, Any]:
    return dict(app.config.html_theme_options or {})


def github_parts(repository_url: str) -> tuple[str, str]:
    """``("owner", "repo")`` of ``https://github.com/owner/repo`` (``.git`` and ``/`` allowed)."""
    parsed = urlparse(repository_url)
    parts = [p for p in parsed.path.split("/") if p]
    if parsed.netloc.lower() not in {"github.com", "www.github.com"} or len(parts) < 2:
        raise ValueError(
            f"repository url must be https://github.com/<owner>/<repo>, not {repository_url!r}"
        )
    owner, repo = parts[0], parts[1]
    if repo.endswith(".git"):
        repo = repo[: -len(".git")]
    return owner, repo


def notebook_relpath(docname: str) -> str:
    """Path of the chapter's notebook inside the repository: ``notebooks/<page>.ipynb``."""
    return f"{NOTEBOOKS_DIR}/{docname}.ipynb"


def launch_urls(theme_options: dict[str, Any], docname: str) -> dict[str, str]:
    """The Colab and (when a BinderHub is configured) Binder URLs of a chapter's notebook."""
    repository_url = theme_options.get("repository_url")
    if not repository_url:
        return {}
    owner, repo = github_parts(repository_url)
    branch = theme_options.get("repository_branch") or "main"
    launch = theme_options.get("launch_buttons") or {}
    path = notebook_relpath(docname)
    colab = (launch.get("colab_url") or DEFAULT_COLAB_URL).rstrip("/")
    urls = {"colab": f"{colab}/github/{owner}/{repo}/blob/{branch}/{path}"}
    binderhub = (launch.get("binderhub_url") or "").rstrip("/")
    if binderhub:
        ui = "lab/tree" if launch.get("notebook_interface") == "jupyterlab" else "tree"
        urls["binder"] = f"{binderhub}/v2/gh/{owner}/{repo}/{branch}?urlpath={ui}/{path}"
    return urls


def _badge(href: str, right: str, color: str, kind: str, tooltip: str) -> str:
    return (
        f'<a class="launch-badge launch-badge-{kind}" href="{html.escape(href)}" '
        f'title="{html.escape(tooltip)}" target="_blank" rel="noopener" style="{_BADGE_STYLE}">'
        f'<span style="{_LEFT_STYLE}">{"Open in" if kind == "colab" else "Launch"}</span>'
        f'<span style="background:{color};color:#fff;padding:0 6px;">{right}</span></a>'
    )


def badges_html(urls: dict[str, str]) -> str:
    parts = [f'<div class="{BADGE_CLASS}">']
    if "colab" in urls:
        parts.append(
            _badge(urls["colab"], "Colab", "#e37400", "colab", "Open this chapter in Colab")
        )
    if "binder" in urls:
        parts.append(
            _badge(urls["binder"], "Binder", "#579aca", "binder", "Run this chapter on Binder")
        )
    parts.append("</div>")
    return "".join(parts)


def _is_notebook(app: Sphinx, docname: str) -> bool:
    """MyST-NB pages (``.ipynb`` or jupytext ``.md``) carry a kernelspec in their metadata."""
    return "kernelspec" in app.env.metadata.get(docname, {})


def _repo_root(app: Sphinx) -> Path:
    book_rel = str(_theme_options(app).get("path_to_docs") or "").strip("/")
    depth = len(Path(book_rel).parts) if book_rel else 0
    root = Path(app.srcdir)
    for _ in range(depth):
        root = root.parent
    return root


def add_badges(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """``doctree-resolved``: insert the badges right after the page title."""
    if app.builder.format != "html" or not _is_notebook(app, docname):
        return
    urls = launch_urls(_theme_options(app), docname)
    if not urls:
        return
    if not (_repo_root(app) / notebook_relpath(docname)).exists():
        logger.warning(
            f"{notebook_relpath(docname)} does not exist, so the Colab badge of {docname!r} "
            "would be a dead link: run `make notebooks`.",
            location=docname,
        )
    raw = nodes.raw("", badges_html(urls), format="html")
    section = next(iter(doctree.findall(nodes.section)), None)
    if section is not None and section.children and isinstance(section[0], nodes.title):
        section.insert(1, raw)
    else:
        doctree.insert(0, raw)


def fix_launch_buttons(
    app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """``html-page-context`` (after the theme's): Colab and Binder buttons open the .ipynb."""
    if not _is_notebook(app, pagename):
        return
    urls = launch_urls(_theme_options(app), pagename)
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            kind = str(button.get("text", "")).lower()
            if kind in urls:
                button["url"] = urls[kind]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("doctree-resolved", add_badges)
    # sphinx_book_theme adds its launch buttons at priority 501.
    app.connect("html-page-context", fix_launch_buttons, priority=900)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
