"""The slide viewer in headless Chromium, with every remote host blocked: on the built site
(chapter 6's viewers, after ``make book``) and in a notebook's HTML export.

Each check opens the viewer at a known level-0 region (the page's ``#x=..&y=..&w=..&h=..``)
centred on the most attended patch over the lesion, once with the attention layer and once
without, waits for the tiles (Chromium's virtual time) and reads the screenshots: without
the layer the patch shows tissue; with it, the patch takes the colour of its value on the
colour scale, blended at the layer's opacity, inside the dashed outline that the page draws
from the same patch's level-0 corners. Marked ``site`` (``make site-test``); fails, never
skips, when Chromium or the site is missing.
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
from nbconvert import HTMLExporter
from nbconvert.preprocessors import ExecutePreprocessor
from PIL import Image

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / "book" / "_build" / "html"
CHAPTER = "06-localization"
TIMEOUT_S = 180


def screenshot(chromium, url: str, out: Path, size=(900, 600)) -> np.ndarray:
    """The page at ``url`` as RGB ``(h, w, 3)`` after its tiles loaded, no network."""
    args = [f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=20000"]
    chromium(*args, f"--screenshot={out}", url, timeout=TIMEOUT_S)
    assert out.is_file(), f"chromium wrote no screenshot of {url}"
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def on_a_lesion(config: dict, i: int) -> bool:
    """Whether patch ``i`` overlaps an annotation polygon (points on a 9 x 9 grid in it)."""
    from matplotlib.path import Path as Outline

    ps = config["patch_size_level0"]
    x, y = config["patches"]["coords_level0"][i]
    grid = np.stack(np.meshgrid(np.linspace(x, x + ps, 9), np.linspace(y, y + ps, 9)), -1)
    points = grid.reshape(-1, 2)
    return any(Outline(p).contains_points(points).any() for p in config["polygons_level0"])


def patch_hash(config: dict, i: int, overlay: bool) -> str:
    """``#...``: the page opens on patch ``i`` (its level-0 box), with the layer on or off."""
    ps = config["patch_size_level0"]
    x, y = config["patches"]["coords_level0"][i]
    return f"#overlay={int(overlay)}&x={x}&y={y}&w={ps}&h={ps}"


def dashed_box(shot: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the page's dashed outline of the patch in view: the rows and
    columns with the longest runs of near-black pixels."""
    dark = (shot < 70).all(axis=-1)
    cols, rows = dark.sum(axis=0), dark.sum(axis=1)
    assert cols.max() > 100 and rows.max() > 100, "no dashed outline on the screenshot"
    xs, ys = np.flatnonzero(cols >= 0.5 * cols.max()), np.flatnonzero(rows >= 0.5 * rows.max())
    return xs.min(), ys.min(), xs.max(), ys.max()


def check_overlay_over_lesion(on: np.ndarray, off: np.ndarray, config: dict, i: int) -> None:
    """Patch ``i`` in view, outlined by the page: without the layer it shows tissue; with
    it, the colour of its value (the slide's highest, 1) at the layer's opacity."""
    assert on.shape == off.shape
    assert config["patches"]["value"][i] == 1.0, "the patch must be the slide's top one"
    assert on_a_lesion(config, i), "the patch must lie on an annotated lesion"
    x0, y0, x1, y1 = dashed_box(on)
    side = x1 - x0
    assert side > 150 and abs(side - (y1 - y0)) <= 0.05 * side, (x0, y0, x1, y1)
    inner = (slice(y0 + side // 6, y1 - side // 6), slice(x0 + side // 6, x1 - side // 6))
    tissue = off[inner].reshape(-1, 3).mean(axis=0)
    r, g, b = tissue
    assert tissue.mean() < 225 and r > g + 25 and b > g + 10, f"no H&E tissue there: {tissue}"
    opacity = config["overlay"]["opacity"]
    top = np.array(matplotlib.colormaps["RdYlGn_r"](1.0)[:3]) * 255
    expected = (1 - opacity) * tissue + opacity * top
    seen = on[inner].reshape(-1, 3).mean(axis=0)
    assert np.abs(seen - expected).max() < 20, f"overlay colour {seen}, expected {expected}"


def test_site_viewer_shows_tissue_and_the_overlay_over_the_lesion(tmp_path, chromium):
    page = SITE / f"{CHAPTER}.html"
    if not page.is_file():
        pytest.fail(f"{page.relative_to(ROOT)} is not built: run `make book` first")
    names = sorted({p.parent.name for p in (SITE / "_viewers").glob("*/index.html")})
    shown = [n for n in names if f'src="_viewers/{n}/index.html' in page.read_text()]
    assert len(shown) == 2, f"chapter 6 should embed two viewers, embeds {shown}"
    for name in shown:
        viewer = SITE / "_viewers" / name / "index.html"
        config = json.loads((viewer.parent / "viewer.json").read_text())
        i = config["top"][0]["patch"]
        shots = {
            overlay: screenshot(
                chromium,
                viewer.as_uri() + patch_hash(config, i, overlay),
                tmp_path / f"{name}-{overlay}.png",
            )
            for overlay in (True, False)
        }
        check_overlay_over_lesion(shots[True], shots[False], config, i)


NOTEBOOK_CELL = """\
import numpy as np
from helpers.settings import load_settings
from helpers.formats import read_coords
from helpers.annotations import read_polygons
from helpers.viewer import slide_viewer

cfg = load_settings()
name = {name!r}
_, coords_level0 = read_coords(cfg.coords_path(name))
attrs, _ = read_coords(cfg.coords_path(name))
ps = int(attrs["patch_size_level0"])
lesion = read_polygons(cfg.annotation_path(name))[0][0].mean(axis=0)
# any model's scores: here, closeness of each patch's centre to the lesion's (the patch
# that holds the lesion's centre scores highest, its neighbours half as much or less)
d = np.linalg.norm(coords_level0 + ps / 2 - lesion, axis=1) / ps
scores = 1 / (1 + d**2)
i = int(np.argmax(scores))
viewer = slide_viewer(cfg, name, scores, start_level0=(*coords_level0[i], ps, ps))
"""


def annotated_slide(settings) -> str:
    """A test slide with an annotation (a tumour slide of the demo or a reader's folder)."""
    names = sorted(p.stem.removesuffix("_patches") for p in settings.coords_dir.glob("*.h5"))
    for name in names:
        if settings.annotation_path(name) is not None:
            return name
    pytest.fail(f"no slide with an annotation in {settings.coords_dir}")


def test_notebook_html_export_shows_the_viewer(tmp_path, demo_settings, chromium):
    name = annotated_slide(demo_settings)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_CELL.format(name=name))]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(
        nb, {"metadata": {"path": str(tmp_path)}}
    )
    outputs = nb.cells[0].outputs
    assert not [o for o in outputs if o.output_type == "error"], outputs
    assert not [o for o in outputs if o.get("name") == "stderr"], outputs  # no warning shown
    frames = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(frames) == 1, f"no inline viewer: {outputs}"
    assert f'src="_viewers/{name}/index.html#x=' in frames[0]["data"]["text/html"]
    html, _ = HTMLExporter(exclude_input=True).from_notebook_node(nb)
    config = json.loads((tmp_path / "_viewers" / name / "viewer.json").read_text())
    i = int(np.argmax(config["patches"]["value"]))
    shots = {}
    for overlay in (True, False):
        page = tmp_path / f"export-{overlay}.html"
        page.write_text(
            html if overlay else html.replace("index.html#x=", "index.html#overlay=0&x=")
        )
        shots[overlay] = screenshot(
            chromium, page.as_uri(), tmp_path / f"export-{overlay}.png", (1000, 900)
        )
    check_overlay_over_lesion(shots[True], shots[False], config, i)
