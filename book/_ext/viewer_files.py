"""Copy the slide viewers the chapters wrote into the built site.

A chapter cell (``helpers.viewer.slide_viewer``) writes each viewer under the chapter's
folder, ``book/_viewers/<slide>/`` with OpenSeadragon in ``book/_viewers/openseadragon/``,
and shows it as ``<iframe src="_viewers/<slide>/index.html">``. Sphinx does not know these
files; this extension copies, when the build has finished, the viewers that the built pages
name (and OpenSeadragon) to ``_build/html/_viewers/``, so the frames load from the site
itself, offline. A page naming a viewer that is not there is an error.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

VIEWERS_DIR = "_viewers"  # helpers.viewer.VIEWERS_DIR
OSD_DIR = "openseadragon"  # helpers.viewer.OSD_DIR
FRAME = re.compile(rf'src="{VIEWERS_DIR}/([^/"]+)/index\.html')


def named_viewers(outdir: Path) -> set[str]:
    """The viewers that the built pages' frames name."""
    names: set[str] = set()
    for page in outdir.glob("*.html"):
        names.update(FRAME.findall(page.read_text(encoding="utf-8", errors="replace")))
    return names


def copy_viewers(app: Sphinx, exception: Exception | None) -> None:
    """``build-finished``: copy the named viewers and OpenSeadragon into the site."""
    if exception is not None or app.builder.format != "html":
        return
    source, target = Path(app.srcdir) / VIEWERS_DIR, Path(app.outdir) / VIEWERS_DIR
    names = named_viewers(Path(app.outdir))
    shutil.rmtree(target, ignore_errors=True)
    if not names:
        return
    missing = [n for n in [*sorted(names), OSD_DIR] if not (source / n).is_dir()]
    if missing:
        raise ExtensionError(f"viewer_files: the pages show {missing}, not in {source}")
    for name in sorted(names) + [OSD_DIR]:
        shutil.copytree(source / name, target / name)


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("build-finished", copy_viewers)
    return {"version": "0.1", "parallel_read_safe": True, "parallel_write_safe": True}
