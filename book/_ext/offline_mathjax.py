"""Serve MathJax from the built site, so the equations typeset without a network.

Sphinx loads MathJax 3 from a CDN by default: read offline (a workshop room without
network) every equation shows as raw TeX. This extension puts a copy of MathJax 3 in the
site's ``_static/mathjax/`` and checks that ``mathjax_path`` (set in ``_config.yml``, relative
to ``_static/``) names a file of that copy.

The copy comes from the PyPI package ``sphinx-mathjax-offline`` (MathJax 3.2.2, the release
``mathjax@3`` on the CDN serves too), pinned in the ``book`` extra of ``pyproject.toml``. We
only take its files: the package's own Sphinx hook is not used. A folder of another MathJax 3
build (for example ``npm pack mathjax@3`` unpacked, its ``es5/`` folder) can be used instead
with ``offline_mathjax_dir`` in ``_config.yml``'s ``sphinx: config:``.

A missing copy, or a ``mathjax_path`` that is a URL or names no file of the copy, stops the
build with an error that says what to do.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.errors import ConfigError

PACKAGE = "sphinx-mathjax-offline"  # its import name has dashes, like its distribution name
STATIC_SUBDIR = "mathjax"


def packaged_mathjax() -> Path | None:
    """The MathJax 3 folder shipped by ``sphinx-mathjax-offline``, or None if not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "static" / STATIC_SUBDIR
    return folder if folder.is_dir() else None


def mathjax_folder(app: Sphinx, config: Config) -> Path:
    configured = str(config.offline_mathjax_dir or "").strip()
    folder = Path(configured).expanduser() if configured else packaged_mathjax()
    if folder is None:
        raise ConfigError(
            f"offline MathJax: the {PACKAGE} package is not installed "
            f'(pip install -e ".[book]"), and offline_mathjax_dir is not set'
        )
    if not folder.is_absolute():
        folder = Path(app.srcdir) / folder
    if not folder.is_dir():
        raise ConfigError(f"offline MathJax: {folder} is not a folder")
    return folder.resolve()


def configure(app: Sphinx, config: Config) -> None:
    """``config-inited``: check ``mathjax_path`` and add the copy to the static files."""
    folder = mathjax_folder(app, config)
    path = str(config.mathjax_path or "")
    prefix = f"{STATIC_SUBDIR}/"
    if "://" in path or path.startswith("//") or not path.startswith(prefix):
        raise ConfigError(
            f"offline MathJax: mathjax_path must be {prefix}<file> (served from the site's "
            f"_static/), not {path!r}"
        )
    if not (folder / path.removeprefix(prefix)).is_file():
        raise ConfigError(f"offline MathJax: {path} is not in {folder}")
    # html_static_path copies the *contents* of each folder into _static/: give it a folder
    # that holds only mathjax/ (the package's static/ folder, or a link farm for another).
    parent = folder.parent
    if folder.name != STATIC_SUBDIR or {p.name for p in parent.iterdir()} != {STATIC_SUBDIR}:
        staging = Path(app.outdir).parent / "offline-mathjax"
        link = staging / STATIC_SUBDIR
        staging.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(folder, target_is_directory=True)
        parent = staging
    config.html_static_path = [*config.html_static_path, str(parent)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("offline_mathjax_dir", "", "html", types=[str])
    app.connect("config-inited", configure)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
