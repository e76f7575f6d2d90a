"""Tests of helpers.deepzoom and helpers.viewer: the pyramids' tiles, their alignment with
the level-0 frame, the .dzi descriptor, the vendored OpenSeadragon, the viewer page and the
notebook cell's fallback. The pages in a browser: tests/test_viewer_browser.py."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import matplotlib
import numpy as np
import openslide
import pytest
from openslide.deepzoom import DeepZoomGenerator
from PIL import Image

from helpers import deepzoom as D
from helpers import viewer as V
from helpers.demo import aperio_description, pyramid_levels, write_pyramid

P = 256  # patch side, level-0 pixels
W0, H0 = 13 * P + 40, 9 * P + 100  # not multiples of a patch nor of a tile
NS = {"d": D.DZI_NS}
TS = D.TILE_SIZE


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory) -> Path:
    """A small pyramidal slide: a pink ellipse of tissue with dark dots on white glass."""
    rng = np.random.default_rng(0)
    rgb = np.full((H0, W0, 3), 245, np.uint8)
    cv2.ellipse(rgb, (W0 // 2, H0 // 2), (W0 // 3, H0 // 3), 10, 0, 360, (225, 150, 200), -1)
    for x, y in rng.integers(0, (W0, H0), size=(400, 2)):
        if rgb[y, x, 1] < 200:
            cv2.circle(rgb, (int(x), int(y)), 5, (90, 40, 130), -1)
    path = tmp_path_factory.mktemp("slide") / "slide.tif"
    write_pyramid(
        path,
        pyramid_levels(rgb, 4, cv2.INTER_AREA),
        aperio_description(W0, H0),
        photometric="rgb",
        compression="jpeg",
    )
    return path


@pytest.fixture(scope="module")
def coords(slide_path) -> np.ndarray:
    """The grid cells (step P from (0, 0)) whose centre is tissue, row by row."""
    with openslide.OpenSlide(str(slide_path)) as s:
        rgb = np.asarray(s.read_region((0, 0), 0, s.dimensions))[..., :3]
    keep = [
        (x, y)
        for y in range(0, H0 - P // 2, P)
        for x in range(0, W0 - P // 2, P)
        if rgb[y + P // 2, x + P // 2, 1] < 200
    ]
    return np.array(keep, np.int64)


@pytest.fixture(scope="module")
def scores(coords) -> np.ndarray:
    return np.random.default_rng(1).normal(size=len(coords))


def test_tissue_rects_cover_exactly_the_patches(coords):
    rects = D.tissue_rects_level0(coords, P)
    covered = np.zeros((H0 + P, W0 + P), bool)
    for x, y, w, h in rects:
        assert h == P and w % P == 0
        assert not covered[y : y + h, x : x + w].any(), "rectangles overlap"
        covered[y : y + h, x : x + w] = True
    patches = np.zeros_like(covered)
    for x, y in coords:
        patches[y : y + P, x : x + P] = True
    assert (covered == patches).all()
    assert len(rects) < len(coords)  # runs were merged
    # a gap in a row starts a new run
    gap = D.tissue_rects_level0(np.array([[0, 0], [P, 0], [3 * P, 0], [0, P]]), P)
    assert gap.tolist() == [[0, 0, 2 * P, P], [3 * P, 0, P, P], [0, P, P, P]]


def _tiles_by_intersection(level_dims, tile_size, rects):
    """Independently: tiles whose box meets a rectangle scaled to the level (half-open)."""
    max_level = len(level_dims) - 1
    out = set()
    for level, (w, h) in enumerate(level_dims):
        s = 2.0 ** (level - max_level)
        for c in range(math.ceil(w / tile_size)):
            for r in range(math.ceil(h / tile_size)):
                tx0, ty0 = c * tile_size, r * tile_size
                for x, y, rw, rh in rects:
                    if (
                        x * s < tx0 + tile_size
                        and (x + rw) * s > tx0
                        and y * s < ty0 + tile_size
                        and (y + rh) * s > ty0
                    ):
                        out.add((level, c, r))
                        break
    return out


def test_tiles_to_write_are_those_that_meet_the_tissue(coords):
    rects = D.tissue_rects_level0(coords, P)
    dims = DeepZoomGenerator(
        openslide.ImageSlide(Image.new("RGB", (W0, H0))), limit_bounds=False
    ).level_dimensions
    tiles = D.tiles_to_write(list(dims), TS, rects)
    assert len(tiles) == len(set(tiles))
    assert set(tiles) == _tiles_by_intersection(dims, TS, rects)
    # no rectangle, no tile; one patch at the far corner, one tile per level at most
    assert D.tiles_to_write(list(dims), TS, np.zeros((0, 4), np.int64)) == []
    corner = D.tiles_to_write(list(dims), TS, np.array([[W0 - 10, H0 - 10, 10, 10]]))
    assert len(corner) == len(dims)


@pytest.fixture(scope="module")
def slide_pyramid(tmp_path_factory, slide_path, coords):
    out = tmp_path_factory.mktemp("dz") / "slide.dzi"
    return D.write_slide_pyramid(slide_path, out, D.tissue_rects_level0(coords, P))


def _written(pyramid) -> set[tuple[int, int, int]]:
    files = pyramid.tiles_dir.glob(f"*/*.{pyramid.fmt}")
    return {(int(f.parent.name), *map(int, f.stem.split("_"))) for f in files}


def test_slide_pyramid_writes_only_tissue_tiles(slide_path, coords, slide_pyramid):
    with openslide.OpenSlide(str(slide_path)) as s:
        dz = DeepZoomGenerator(s, tile_size=TS, overlap=1, limit_bounds=False)
        dims, level_tiles = list(dz.level_dimensions), dz.level_tiles
        assert (slide_pyramid.width, slide_pyramid.height) == s.dimensions == dims[-1]
        written = _written(slide_pyramid)
        rects = D.tissue_rects_level0(coords, P)
        assert written == set(D.tiles_to_write(dims, TS, rects))
        assert slide_pyramid.n_tiles == len(written) < slide_pyramid.n_tiles_all
        assert slide_pyramid.n_tiles_all == sum(c * r for c, r in level_tiles)
        # a level-0 tile outside every patch is absent; the one under a patch is the slide's
        top = len(dims) - 1
        x, y = coords[0] + P // 2
        assert (top, x // TS, y // TS) in written
        tile = np.asarray(
            Image.open(slide_pyramid.tiles_dir / str(top) / f"{x // TS}_{y // TS}.jpeg")
        )
        expected = np.asarray(dz.get_tile(top, (x // TS, y // TS)))
        assert tile.shape == expected.shape
        assert np.abs(tile.astype(int) - expected).mean() < 5  # JPEG, the same quality
    glass = [
        (top, c, r)
        for c in range(level_tiles[top][0])
        for r in range(level_tiles[top][1])
        if (top, c, r) not in written
    ]
    assert glass, "the slide has glass: some level-0 tiles are not written"
    nbytes = sum(f.stat().st_size for f in slide_pyramid.tiles_dir.rglob("*") if f.is_file())
    assert slide_pyramid.nbytes == nbytes + slide_pyramid.dzi.stat().st_size


def test_dzi_descriptor(slide_pyramid, coords):
    root = ET.parse(slide_pyramid.dzi).getroot()
    assert root.tag == f"{{{D.DZI_NS}}}Image"
    assert root.get("Format") == "jpeg" and root.get("TileSize") == str(TS)
    assert root.get("Overlap") == "1"
    size = root.find("d:Size", NS)
    assert (int(size.get("Width")), int(size.get("Height"))) == (W0, H0)
    rects = root.findall("d:DisplayRects/d:DisplayRect", NS)
    assert len(rects) == len(D.tissue_rects_level0(coords, P))
    max_level = math.ceil(math.log2(max(W0, H0)))
    assert {r.get("MaxLevel") for r in rects} == {str(max_level)}
    assert len(list(slide_pyramid.tiles_dir.iterdir())) == max_level + 1  # every level
    # the inline form the page embeds says the same
    image = slide_pyramid.image_json("slide_files/")["Image"]
    assert image["Size"] == {"Width": str(W0), "Height": str(H0)}
    first = rects[0].find("d:Rect", NS).attrib
    assert {k: first[k] for k in ("X", "Y", "Width", "Height")} == {
        k: v for k, v in image["DisplayRect"][0]["Rect"].items() if k in first
    }


def test_attention_layer_is_aligned_to_level0(tmp_path, coords, scores):
    values = (scores - scores.min()) / np.ptp(scores)
    pyr = D.write_value_pyramid(values, coords, P, (W0, H0), tmp_path / "a.dzi", cell_px=16)
    assert pyr.level0_per_px == P / 16 and pyr.fmt == "png"
    assert pyr.width * pyr.level0_per_px >= W0 and (pyr.width - 1) * pyr.level0_per_px < W0
    cmap = matplotlib.colormaps["RdYlGn_r"]
    top = pyr.levels - 1
    ts = pyr.tile_size
    for i in np.random.default_rng(2).choice(len(coords), 12, replace=False):
        # the centre of patch i, level-0 -> layer pixels -> its tile at full size
        u, v = ((coords[i] + P / 2) / pyr.level0_per_px).astype(int)
        tile = np.asarray(Image.open(pyr.tiles_dir / str(top) / f"{u // ts}_{v // ts}.png"))
        ox, oy = (1 if u // ts else 0), (1 if v // ts else 0)  # the overlap on the left/top
        pixel = tile[v % ts + oy, u % ts + ox]
        assert pixel[3] == 255
        assert (
            np.abs(pixel[:3].astype(int) - np.rint(np.array(cmap(values[i])[:3]) * 255)).max() <= 1
        )
    # between the patches the layer is transparent
    image = D.value_image(values, coords, P, (W0, H0), pyr.level0_per_px)
    inside = np.zeros(image.shape[:2], bool)
    for x, y in (coords / pyr.level0_per_px).astype(int):
        inside[y : y + 16, x : x + 16] = True
    assert (image[inside, 3] == 255).all() and (image[~inside, 3] == 0).all()
    # its tiles are written where the patches are, fewer than the whole pyramid's
    assert 0 < pyr.n_tiles <= pyr.n_tiles_all


def test_vendored_openseadragon_matches_its_checksums(tmp_path, monkeypatch):
    folder = V.openseadragon_folder()
    js = folder / "openseadragon.min.js"
    assert hashlib.sha256(js.read_bytes()).hexdigest() == V.OPENSEADRAGON_MIN_JS_SHA256
    assert js.read_text()[:200].startswith(f"//! openseadragon {V.OPENSEADRAGON_VERSION}")
    assert (
        "Redistribution and use in source and binary forms" in (folder / "LICENSE.txt").read_text()
    )
    listed = {
        line.split(maxsplit=1)[1] for line in (folder / "SHA256SUMS").read_text().splitlines()
    }
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert on_disk - listed == {"SHA256SUMS"}
    # an altered copy is refused
    copy = tmp_path / "static"
    shutil.copytree(V.STATIC, copy)
    (copy / "openseadragon" / "images" / "home_rest.png").write_bytes(b"changed")
    monkeypatch.setattr(V, "STATIC", copy)
    with pytest.raises(RuntimeError, match="home_rest.png"):
        V.openseadragon_folder()


def test_package_data_declares_the_static_files():
    text = (Path(V.__file__).parents[1] / "pyproject.toml").read_text()
    assert re.search(r'helpers = \[[^\]]*"static/openseadragon/\*"', text)
    assert re.search(r'helpers = \[[^\]]*"static/\*\.html"', text)


@pytest.fixture(scope="module")
def viewer(tmp_path_factory, slide_path, coords, scores):
    polygon = np.array([[1000, 800], [1600, 800], [1600, 1300], [1000, 1300]], float)
    root = tmp_path_factory.mktemp("viewers")
    return V.write_viewer(root, "slide", slide_path, coords, P, scores, 0.5, [polygon], top_k=3)


def test_viewer_page_is_self_contained(viewer, coords, scores):
    page = viewer.page.read_text()
    root = viewer.page.parents[1]
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert scripts == ["../openseadragon/openseadragon.min.js"]
    assert (viewer.page.parent / scripts[0]).resolve().is_file()
    assert "://" not in "".join(re.findall(r'(?:src|href)="([^"]+)"', page))
    config = json.loads(re.search(r"const CONFIG = (\{.*\});", page).group(1))
    assert config["slide"]["Image"]["Url"] == "slide_files/"
    assert (viewer.page.parent / "slide_files").is_dir() and (root / "openseadragon").is_dir()
    assert config["mpp"] == 0.5 and len(config["polygons_level0"]) == 1
    order = np.argsort(-scores, kind="stable")[:3]
    assert [t["patch"] for t in config["top"]] == order.tolist()
    assert config["top"][0]["rect_level0"] == [*coords[order[0]].tolist(), P, P]
    assert config["overlay"]["width_level0"] >= W0
    saved = json.loads((viewer.page.parent / "viewer.json").read_text())
    assert saved["patches"]["coords_level0"] == coords.tolist()
    assert np.isclose(max(saved["patches"]["value"]), 1) and np.isclose(
        min(saved["patches"]["value"]), 0
    )
    assert viewer.nbytes > viewer.slide.nbytes > 0
    assert "slide tiles written" in viewer.summary()


class _Cfg:
    """What slide_viewer asks of a Settings: its slide files made, three paths from a Settings."""

    def __init__(self, slide_path, coords_path, annotation=None):
        self._slide, self._coords, self._annotation = slide_path, coords_path, annotation

    def ensure_slides(self, *names):
        assert self._slide.exists()

    def wsi_path(self, name):
        return self._slide

    def coords_path(self, name):
        return self._coords

    def annotation_path(self, name):
        return self._annotation


@pytest.fixture
def coords_h5(tmp_path, coords) -> Path:
    from helpers.formats import save_coords

    path = tmp_path / "slide_patches.h5"
    save_coords(
        path,
        coords,
        {
            "patch_size_level0": float(P),
            "patch_size": P,
            "target_magnification": 20.0,
            "level0_magnification": 20,
        },
    )
    return path


def test_slide_viewer_outside_a_notebook_falls_back(
    tmp_path, slide_path, coords_h5, scores, capsys, monkeypatch
):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "show", lambda: None)
    cfg = _Cfg(slide_path, coords_h5)
    assert V.slide_viewer(cfg, "slide", scores, root=tmp_path / "v") is None
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("Static figure instead of the zoomable viewer: not in a notebook")
    assert (tmp_path / "v" / "slide" / "index.html").is_file()  # written all the same
    assert plt.get_fignums(), "the static figure is drawn"
    plt.close("all")
    # a file openslide cannot open: the fallback says so
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a slide")
    cfg_bad = _Cfg(bad, coords_h5)
    monkeypatch.setattr(V, "_static_figure", lambda *a: print("(static figure)"))
    assert V.slide_viewer(cfg_bad, "slide", scores, root=tmp_path / "v") is None
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("Static figure instead of the zoomable viewer: the viewer could not")
    assert out[1] == "(static figure)"


def test_colab_serves_the_viewer_from_the_kernel(viewer, monkeypatch):
    """On Colab the kernel serves the viewers' folder and Colab frames its port."""
    import sys
    import types
    import urllib.request

    calls = []
    output = types.SimpleNamespace(serve_kernel_port_as_iframe=lambda *a, **k: calls.append((a, k)))
    colab = types.ModuleType("google.colab")
    colab.output = output
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    assert V._show(viewer, 400, (10, 20, 30, 40)) is None
    ((port,), kwargs) = calls[0]
    assert kwargs == {"path": "/slide/index.html#x=10&y=20&w=30&h=40", "height": 400}
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/slide/index.html") as page:
        assert b"const CONFIG" in page.read()
    with urllib.request.urlopen(f"{base}/openseadragon/openseadragon.min.js") as js:
        assert hashlib.sha256(js.read()).hexdigest() == V.OPENSEADRAGON_MIN_JS_SHA256


def test_a_viewer_outside_the_notebooks_folder_is_not_framed(viewer, tmp_path, monkeypatch):
    """In Jupyter the frame's address is relative to the notebook's folder: a viewer written
    elsewhere cannot be shown, and the reason says so."""
    import helpers.progress

    monkeypatch.setattr(helpers.progress, "in_notebook", lambda: True)
    monkeypatch.chdir(tmp_path)
    why = V._show(viewer, 400)
    assert why is not None and "not under the notebook's folder" in why


def test_a_large_slide_keeps_level0_around_the_evidence_only(tmp_path, slide_path, coords):
    rects = D.tissue_rects_level0(coords, P)
    detail = np.array([[2 * P, 2 * P, P, P]])  # one patch: the evidence
    full = D.write_slide_pyramid(slide_path, tmp_path / "full.dzi", rects)
    capped = D.write_slide_pyramid(
        slide_path, tmp_path / "capped.dzi", rects, detail_level0=detail, max_tiles=full.n_tiles - 1
    )
    assert full.detail_levels == 0 and capped.detail_levels == 1
    assert capped.n_tiles < full.n_tiles
    top = capped.levels - 1
    written, everywhere = _written(capped), _written(full)
    # below the finest level: every tissue tile; on it: only the tiles that meet the evidence
    assert {t for t in written if t[0] < top} == {t for t in everywhere if t[0] < top}
    finest = {t for t in written if t[0] == top}
    x0, y0 = detail[0, :2] // TS
    x1, y1 = (detail[0, :2] + P - 1) // TS
    assert finest == {(top, c, r) for c in range(x0, x1 + 1) for r in range(y0, y1 + 1)}
    # the descriptor says so: the tissue up to the level below, the evidence on the finest
    levels = {
        (r.get("MinLevel"), r.get("MaxLevel"))
        for r in ET.parse(capped.dzi).getroot().findall("d:DisplayRects/d:DisplayRect", NS)
    }
    assert levels == {("0", str(top - 1)), (str(top), str(top))}


def test_the_viewer_notes_where_level0_is_kept(tmp_path, slide_path, coords, scores):
    kwargs = {"top_k": 1}  # the evidence: one patch and its neighbours
    full = V.write_viewer(
        tmp_path, "s", slide_path, coords, P, scores, 0.5, max_tiles=None, **kwargs
    )
    cap = full.slide.n_tiles - 1
    v = V.write_viewer(tmp_path, "s", slide_path, coords, P, scores, 0.5, max_tiles=cap, **kwargs)
    assert v.slide.detail_levels == 1 and v.slide.n_tiles <= cap
    assert "Full resolution" not in full.config["outline_note"]
    assert "Full resolution only around them" in v.config["outline_note"]
    assert "level 0 only around the evidence" in v.summary()


def test_levels_dropped_from_the_tissue_are_bounded(coords):
    rects = D.tissue_rects_level0(coords, P)
    dims = DeepZoomGenerator(
        openslide.ImageSlide(Image.new("RGB", (W0, H0))), limit_bounds=False
    ).level_dimensions
    huge = np.array([[0, 0, W0, H0]])  # evidence everywhere: no cap can be met
    _, dropped = D.detail_rects(list(dims), TS, rects, huge, max_tiles=1, max_dropped=3)
    assert dropped == 3
    fitted, dropped = D.detail_rects(list(dims), TS, rects, None, max_tiles=10**6)
    assert dropped == 0 and (fitted[:, 4:] == [0, len(dims) - 1]).all()
