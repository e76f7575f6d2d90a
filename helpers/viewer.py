"""A deep-zoom slide viewer with the attention layer, for the site and for notebooks.

:func:`write_viewer` writes one folder per slide: the slide's Deep Zoom pyramid and the
attention layer (:mod:`helpers.deepzoom`), and ``index.html``, an OpenSeadragon page with
the layer's opacity and on/off switch, the annotation outline, the most attended patches
(click one to go there) and a scale bar in µm from the slide's mpp. OpenSeadragon itself
(v6.1.1, BSD-3-Clause, from the npm registry; ``make openseadragon`` fetches it again) is
vendored in ``helpers/static/openseadragon/`` and copied next to the slides' folders, so
the page needs no network::

    <root>/openseadragon/openseadragon.min.js, images/, LICENSE.txt
    <root>/<name>/index.html, viewer.json, slide.dzi, slide_files/, attention.dzi, attention_files/

:func:`slide_viewer` is the chapter's one call: it writes the viewer of a slide of a TRIDENT
folder under the notebook's folder (``_viewers/``) and shows it inline, as an ``<iframe>``
that Jupyter serves from the notebook's folder and the site from its own copy
(``book/_ext/viewer_files.py``); on Colab the kernel serves it. Where neither can work it
draws the static thumbnail overlay instead and says why in one line.

Public API::

    openseadragon_folder() -> Path        (checked against its SHA256SUMS)
    write_viewer(root, name, slide_path, coords_level0, patch_size_level0, scores, ...) -> Viewer
    write_slide_viewer(cfg, name, scores, root=None, ...) -> Viewer
    slide_viewer(cfg, name, scores, ...) -> Viewer | None   (written and shown)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helpers.deepzoom import (
    JPEG_QUALITY,
    Pyramid,
    tissue_rects_level0,
    write_slide_pyramid,
    write_value_pyramid,
)
from helpers.grid import check_coords_level0
from helpers.scores import minmax

__all__ = [
    "OPENSEADRAGON_VERSION",
    "Viewer",
    "openseadragon_folder",
    "write_viewer",
    "write_slide_viewer",
    "slide_viewer",
]

STATIC = Path(__file__).resolve().parent / "static"
OPENSEADRAGON_VERSION = "6.1.1"
#: sha256 of ``npm pack openseadragon@6.1.1`` (the tarball the vendored files come from)
OPENSEADRAGON_TARBALL_SHA256 = "b4ab2942f33b90e0448e4d20fc5ed14cee049f1f3ae49d70afd4b05e9a2f92d0"
#: sha256 of the vendored minified build (also in SHA256SUMS, with every other file)
OPENSEADRAGON_MIN_JS_SHA256 = "14d587cd3ee7c4861f1a41077ce642029364a21029956ba635bd8fb1202cf9ad"
OSD_DIR = "openseadragon"
#: The folder the chapters write their viewers to, under the notebook's (the kernel's) folder.
VIEWERS_DIR = "_viewers"
#: At most this many slide tiles a viewer (about 90 MB of 512 px JPEG tiles): a larger
#: slide keeps level 0 only around the top patches and the annotated lesions.
MAX_TILES = 3000
#: How the attention layer is coloured: chapter 6's colour scale (red highest, green lowest).
CMAP = "RdYlGn_r"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def openseadragon_folder() -> Path:
    """The vendored OpenSeadragon folder, every file checked against its ``SHA256SUMS``.

    Raises:
        RuntimeError: a file is missing or differs (run ``make openseadragon``).
    """
    folder = STATIC / OSD_DIR
    sums = folder / "SHA256SUMS"
    bad = [] if sums.is_file() else ["SHA256SUMS"]
    for line in sums.read_text().splitlines() if sums.is_file() else []:
        digest, name = line.split(maxsplit=1)
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            bad.append(name)
    if bad or _sha256(folder / "openseadragon.min.js") != OPENSEADRAGON_MIN_JS_SHA256:
        raise RuntimeError(
            f"{folder}: OpenSeadragon {OPENSEADRAGON_VERSION} is missing or altered "
            f"({', '.join(bad) or 'openseadragon.min.js'}); run `make openseadragon`."
        )
    return folder


def _copy_openseadragon(root: Path) -> None:
    """OpenSeadragon next to the viewers' folders (``root/openseadragon``), once."""
    source, target = openseadragon_folder(), root / OSD_DIR
    if (target / "SHA256SUMS").is_file() and (target / "SHA256SUMS").read_bytes() == (
        source / "SHA256SUMS"
    ).read_bytes():
        return
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)


@dataclass
class Viewer:
    """A viewer written by :func:`write_viewer`."""

    page: Path  # <root>/<name>/index.html
    slide: Pyramid
    overlay: Pyramid
    seconds: float  # time to write it
    config: dict  # what the page shows (also in viewer.json)

    @property
    def nbytes(self) -> int:
        """Bytes of the slide's folder (the shared OpenSeadragon copy not included)."""
        return sum(p.stat().st_size for p in self.page.parent.rglob("*") if p.is_file())

    def summary(self) -> str:
        s, o = self.slide, self.overlay
        return (
            f"{self.page.parent.name}: {s.n_tiles} of {s.n_tiles_all} slide tiles written "
            f"({s.n_tiles / s.n_tiles_all:.0%}: those with tissue"
            + ("; level 0 only around the evidence" if s.detail_levels else "")
            + f"), {o.n_tiles} attention tiles; "
            f"{self.nbytes / 1e6:.1f} MB in {self.seconds:.1f} s"
        )


def _gradient(cmap: str, stops: int = 11) -> str:
    import matplotlib

    colours = matplotlib.colormaps[cmap](np.linspace(0, 1, stops))[:, :3]
    return ", ".join(f"rgb({r:.0f},{g:.0f},{b:.0f})" for r, g, b in colours * 255)


def _empty_folder(root: Path, name: str) -> Path:
    """``root/name``, emptied (the viewer is rewritten whole), with OpenSeadragon beside it."""
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    _copy_openseadragon(root)
    return folder


def _write_pyramids(
    folder, slide_path, coords_level0, ps, scores, top, polygons_level0, cell_px, quality, max_tiles
) -> tuple[Pyramid, Pyramid, tuple[int, int]]:
    """The slide's pyramid (tissue tiles; level 0 kept around the ``top`` patches and the
    lesions when over ``max_tiles``) and the attention layer's, in ``folder``; and the slide's
    level-0 size."""
    import openslide

    with openslide.OpenSlide(str(slide_path)) as slide:
        width_level0, height_level0 = slide.dimensions
        level0_size = (int(width_level0), int(height_level0))
    boxes = [
        np.r_[np.min(p, 0) - ps, np.ptp(p, 0) + 2 * ps] for p in map(np.asarray, polygons_level0)
    ]
    slide_pyr = write_slide_pyramid(
        slide_path,
        folder / "slide.dzi",
        tissue_rects_level0(coords_level0, ps),
        quality=quality,
        detail_level0=np.array([t["view_level0"] for t in top] + boxes, np.int64).reshape(-1, 4),
        max_tiles=max_tiles,
        # the tissue stays drawn at the attention layer's resolution or finer
        max_dropped=max(int(np.log2(ps / cell_px)), 0),
    )
    overlay = write_value_pyramid(
        minmax(scores), coords_level0, ps, level0_size, folder / "attention.dzi", cell_px, CMAP
    )
    return slide_pyr, overlay, level0_size


def _write_json(path: Path, config, slide_pyr, overlay, seconds, coords_level0, scores) -> None:
    """``viewer.json``, for scripts and tests: the page's config, the writing's stats and every
    patch with the value its cell is drawn with."""
    stats = {"seconds": seconds, "slide_tiles": slide_pyr.n_tiles}
    stats |= {"slide_tiles_all": slide_pyr.n_tiles_all, "overlay_tiles": overlay.n_tiles}
    patches = {"coords_level0": coords_level0.tolist(), "value": minmax(scores).round(6).tolist()}
    path.write_text(json.dumps({**config, "stats": stats, "patches": patches}))


def _top_patches(scores: np.ndarray, coords_level0: np.ndarray, ps: int, top_k: int) -> list:
    """The ``top_k`` highest-scoring patches: their rectangle, a view around them (five
    patches wide) and a label, all in level-0 pixels."""
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [
        {
            "patch": int(i),
            "rect_level0": [int(x), int(y), ps, ps],
            "view_level0": [int(x) - 2 * ps, int(y) - 2 * ps, 5 * ps, 5 * ps],
            "label": f"{scores[i]:.3g} at ({int(x)}, {int(y)})",
        }
        for i, (x, y) in zip(order, coords_level0[order], strict=True)
    ]


def _page_config(
    name: str, level0_size, mpp: float, ps: int, slide_pyr: Pyramid, top: list, polygons_level0
) -> dict:
    """The page's config without the layer: the slide's frame, its pyramid, the top patches
    and the annotation polygons (level-0 pixels, rounded to 0.1)."""
    return {
        "name": name,
        "level0_size": list(level0_size),
        "mpp": mpp,
        "patch_size_level0": ps,
        "slide": slide_pyr.image_json("slide_files/"),
        "polygons_level0": [np.round(np.asarray(p, float), 1).tolist() for p in polygons_level0],
        "top": top,
    }


def _overlay_config(
    overlay: Pyramid, opacity: float, score_name: str, patch_um: float, ps: int
) -> dict:
    """What the page needs to draw the attention layer, and its legend's note."""
    return {
        "source": overlay.image_json("attention_files/"),
        "level0_per_px": overlay.level0_per_px,
        "width_level0": overlay.width * overlay.level0_per_px,
        "opacity": opacity,
        "note": (
            f"{score_name}, min-max scaled within this slide (0 its lowest, 1 its "
            f"highest score), one cell per patch ({ps} level-0 px, {patch_um:.0f} µm); "
            "read it with the slide's probability."
        ),
    }


def _outline_note(annotated: bool, slide_pyr: Pyramid, max_tiles: int | None) -> str:
    """The line under the viewer: what the outlines are and where level 0 was kept."""
    note = (
        "Blue: the annotated tumour outline; dashed: the most attended patches."
        if annotated
        else "No annotation for this slide; dashed: the most attended patches."
    )
    if slide_pyr.detail_levels:
        note += (
            f" Full resolution only around them and the lesions (the slide would need more "
            f"than {max_tiles} tiles); elsewhere 1/{2**slide_pyr.detail_levels} of it."
        )
    return note


def _write_page(folder: Path, title: str, config: dict) -> None:
    """``folder/index.html``: the page template with the title, colour scale and config."""
    page = (STATIC / "viewer.html").read_text()
    page = (
        page.replace("__TITLE__", title)
        .replace("__GRADIENT__", _gradient(CMAP))
        .replace("__CONFIG__", json.dumps(config))
    )
    (folder / "index.html").write_text(page, encoding="utf-8")


def write_viewer(
    root,
    name: str,
    slide_path,
    coords_level0,
    patch_size_level0: int,
    scores,
    mpp: float,
    polygons_level0=(),
    top_k: int = 5,
    opacity: float = 0.45,
    score_name: str = "attention weight s_n",
    cell_px: int = 16,
    quality: int = JPEG_QUALITY,
    max_tiles: int | None = MAX_TILES,
) -> Viewer:
    """Write the viewer of one slide: pyramids, ``index.html`` and ``viewer.json``.

    Arguments:
        root: The viewers' folder: the slide's is ``root/name`` (replaced), OpenSeadragon's
            ``root/openseadragon``.
        name: The slide's name (its folder's and page's title).
        slide_path: The slide file (any format openslide opens).
        coords_level0: ``(N, 2)`` int level-0 corners of its patches (TRIDENT's coords).
        patch_size_level0: Patch side in level-0 pixels.
        scores: ``(N,)`` one score per patch (any model's), drawn min-max scaled per slide.
        mpp: Level-0 microns per pixel (the scale bar).
        polygons_level0: Annotation polygons, each ``(K, 2)`` level-0 ``(x, y)`` vertices.
        top_k: How many of the highest-scoring patches to list and outline.
        opacity: The layer's opacity when the page opens.
        score_name: What the scores are, for the legend.
        cell_px: Layer pixels per patch side.
        quality: JPEG quality of the slide's tiles.
        max_tiles: Slide tiles at most (None: no limit); beyond, level 0 only around the
            top patches and the lesions.

    Returns:
        The :class:`Viewer` written, with its sizes and writing time."""
    start = time.perf_counter()
    coords_level0 = check_coords_level0(coords_level0, patch_size_level0)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if len(scores) != len(coords_level0):
        raise ValueError(f"{len(scores)} scores for {len(coords_level0)} patches.")
    folder = _empty_folder(Path(root), name)
    top = _top_patches(scores, coords_level0, ps := int(patch_size_level0), top_k)
    pyramid_args = (coords_level0, ps, scores, top, polygons_level0, cell_px, quality, max_tiles)
    slide_pyr, overlay, level0_size = _write_pyramids(folder, slide_path, *pyramid_args)
    config = _page_config(name, level0_size, float(mpp), ps, slide_pyr, top, polygons_level0)
    config["overlay"] = _overlay_config(overlay, opacity, score_name, ps * mpp, ps)
    config["outline_note"] = _outline_note(len(polygons_level0) > 0, slide_pyr, max_tiles)
    _write_page(folder, f"{name}: {score_name}", config)
    seconds = time.perf_counter() - start
    _write_json(folder / "viewer.json", config, slide_pyr, overlay, seconds, coords_level0, scores)
    return Viewer(folder / "index.html", slide_pyr, overlay, seconds, config)


_SERVERS: dict = {}  # root folder -> the kernel's HTTP server for it (Colab)


def _kernel_server(root: Path) -> int:
    """A local HTTP server for ``root`` in a thread of the kernel (Colab); its port."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:  # no request log on the notebook's stderr
            pass

    if root not in _SERVERS:
        handler = functools.partial(Quiet, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        _SERVERS[root] = server
    return _SERVERS[root].server_address[1]


def _show(viewer: Viewer, height: int, start_level0=None) -> str | None:
    """Show the page inline; ``None`` when shown, else why it cannot be."""
    from helpers.progress import in_notebook

    if "google.colab" in sys.modules:
        from google.colab import output  # type: ignore[import-not-found]

        root = viewer.page.parent.parent
        port = _kernel_server(root)
        path = f"/{viewer.page.parent.name}/index.html{_hash(start_level0)}"
        output.serve_kernel_port_as_iframe(port, path=path, height=height)
        return None
    if not in_notebook():
        return "not in a notebook, so no page to show the viewer in"
    try:
        src = Path(os.path.relpath(viewer.page, Path.cwd())).as_posix()
    except ValueError:  # another drive (Windows)
        src = ".."
    if src.startswith(".."):
        return f"the viewer's files ({viewer.page.parent}) are not under the notebook's folder"
    from IPython.display import display

    frame = (
        f'<iframe src="{src}{_hash(start_level0)}" title="{viewer.page.parent.name}" '
        f'width="100%" height="{height}" style="border:1px solid #ccc"></iframe>'
    )
    display({"text/html": frame}, raw=True)  # (IPython's HTML() warns about an iframe)
    return None


def _hash(start_level0) -> str:
    """``#x=..&y=..&w=..&h=..``: the page opens at this level-0 region (none: whole slide)."""
    if start_level0 is None:
        return ""
    x, y, w, h = (int(v) for v in start_level0)
    return f"#x={x}&y={y}&w={w}&h={h}"


def _static_figure(slide_path, coords_level0, patch_size_level0, scores, name: str) -> None:
    """The static fallback: the scaled scores over the slide's thumbnail."""
    import matplotlib.pyplot as plt

    from helpers.canvas import overlay_on_thumbnail
    from helpers.plots import strip_ticks

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(
        overlay_on_thumbnail(str(slide_path), coords_level0, minmax(scores), patch_size_level0)
    )
    ax.set_title(f"{name}: attention (min-max scaled)", fontsize=10)
    strip_ticks(ax)
    fig.tight_layout()
    plt.show()


def write_slide_viewer(cfg, name: str, scores, root=None, **kwargs) -> Viewer:
    """Write the viewer of slide ``name`` of a TRIDENT folder (no display).

    Makes sure the slide's files are there (``cfg.ensure_slides``), then reads the slide
    (``cfg.wsi_path``), its coords (``cfg.coords_path``), its mpp and, when
    there is one, its annotation (``cfg.annotation_path``).

    Arguments:
        cfg: :class:`helpers.settings.Settings` (the demo or a reader's own folder).
        name: The slide.
        scores: ``(N,)`` one score per patch of its coords file, any model's.
        root: Where to write (default ``_viewers/`` in the notebook's folder).
        kwargs: Passed to :func:`write_viewer` (``top_k``, ``opacity``, ``score_name``...).
    """
    import openslide

    from helpers.annotations import read_polygons
    from helpers.formats import read_coords
    from helpers.slide import slide_mpp

    cfg.ensure_slides(name)  # the demo's fast start paints the slide here
    attrs, coords_level0 = read_coords(cfg.coords_path(name))
    slide_path = cfg.wsi_path(name)
    with openslide.OpenSlide(str(slide_path)) as slide:
        mpp = slide_mpp(slide)
    xml = cfg.annotation_path(name)
    polygons = read_polygons(xml)[0] if xml is not None else []
    root = Path(root) if root is not None else Path.cwd() / VIEWERS_DIR
    ps = int(attrs["patch_size_level0"])
    return write_viewer(root, name, slide_path, coords_level0, ps, scores, mpp, polygons, **kwargs)


def slide_viewer(
    cfg, name: str, scores, root=None, height: int = 520, start_level0=None, **kwargs
) -> Viewer | None:
    """Write the viewer of slide ``name`` of a TRIDENT folder and show it inline.

    :func:`write_slide_viewer`, then the page in an inline frame. Where the viewer cannot be
    written or shown, draws the static thumbnail overlay and prints one line saying why.

    Arguments:
        cfg, name, scores, root, kwargs: As :func:`write_slide_viewer`'s.
        height: The inline frame's height in pixels.
        start_level0: ``(x, y, width, height)`` level-0 region to open at (default: the
            whole slide).

    Returns:
        The :class:`Viewer`, or ``None`` when it fell back to the static figure.
    """
    import openslide

    from helpers.formats import read_coords

    viewer = None
    try:
        viewer = write_slide_viewer(cfg, name, scores, root, **kwargs)
        print(viewer.summary())
        why = _show(viewer, height, start_level0)
    except (OSError, ValueError, RuntimeError, openslide.OpenSlideError) as error:
        why = f"the viewer could not be written ({type(error).__name__}: {error})"
    if why is None:
        return viewer
    print(f"Static figure instead of the zoomable viewer: {why}.")
    attrs, coords_level0 = read_coords(cfg.coords_path(name))
    _static_figure(cfg.wsi_path(name), coords_level0, int(attrs["patch_size_level0"]), scores, name)
    return None
