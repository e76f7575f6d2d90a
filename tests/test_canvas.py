"""Tests of helpers.canvas: the one-read canvas against the per-patch way, and the overlay."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import matplotlib
import numpy as np
import openslide
import pandas as pd
import pytest
from torchmil.visualize import draw_heatmap_wsi

from helpers import canvas as C
from helpers.demo import aperio_description, pyramid_levels, write_pyramid
from helpers.reference import slide_canvas_per_patch
from helpers.trident import to_rgb

P = 1024
MAX_MEAN_DIFF = 8.0  # of 255, mean absolute pixel difference with the per-patch canvas


def write_slide(path: Path, rgb0: np.ndarray, n_levels: int = 6) -> Path:
    """A tiled JPEG pyramid, one page per level, with an Aperio description (openslide: aperio)."""
    h, w = rgb0.shape[:2]
    levels = pyramid_levels(rgb0, n_levels, cv2.INTER_AREA)
    write_pyramid(path, levels, aperio_description(w, h), photometric="rgb", compression="jpeg")
    return path


W0, H0 = 11 * P + 200, 8 * P + 64


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory) -> Path:
    """An 11k x 8k slide: pink tissue with nuclei-sized dark dots on white glass."""
    rng = np.random.default_rng(3)
    small = np.full((H0 // 8, W0 // 8, 3), 245, np.uint8)
    cv2.ellipse(small, (W0 // 16, H0 // 16), (W0 // 20, H0 // 22), 15, 0, 360, (225, 160, 200), -1)
    rgb = cv2.resize(small, (W0, H0), interpolation=cv2.INTER_LINEAR)
    tissue = rgb[..., 1] < 200
    ys, xs = np.nonzero(tissue[::9, ::9])
    pick = rng.uniform(size=len(xs)) < 0.05
    for x, y in zip(xs[pick] * 9, ys[pick] * 9, strict=True):
        cv2.circle(rgb, (int(x), int(y)), int(rng.integers(3, 7)), (90, 40, 130), -1)
    return write_slide(tmp_path_factory.mktemp("slide") / "slide.tif", rgb)


@pytest.fixture(scope="module")
def coords(slide_path) -> np.ndarray:
    """Grid cells (from (0, 0), step P) that touch tissue, sorted by x then y like TRIDENT."""
    with openslide.OpenSlide(str(slide_path)) as s:
        thumb = np.asarray(s.read_region((0, 0), 4, s.level_dimensions[4]))[..., :3]
    tissue = thumb[..., 1] < 200
    cell = P // 16
    keep = []
    for y in range(0, H0, P):
        for x in range(0, W0, P):
            if tissue[y // 16 : y // 16 + cell, x // 16 : x // 16 + cell].any():
                keep.append((x, y))
    out = np.array(keep, np.int64)
    return out[np.lexsort((out[:, 1], out[:, 0]))]


@pytest.mark.slow
def test_canvas_matches_the_per_patch_way(slide_path, coords):
    with openslide.OpenSlide(str(slide_path)) as slide:
        fast, rows, cols = C.slide_canvas(slide, coords, P, cell_size=50)
        slow, rows_ref, cols_ref = slide_canvas_per_patch(slide, coords, P, cell_size=50)
    assert 20 < len(coords) < 88  # some cells are glass only: the canvas has white holes
    assert fast.dtype == np.uint8 and fast.shape == slow.shape
    assert fast.shape == ((rows.max() + 1) * 50, (cols.max() + 1) * 50, 3)
    np.testing.assert_array_equal(rows, rows_ref)
    np.testing.assert_array_equal(cols, cols_ref)
    diff = np.abs(fast.astype(float) - slow.astype(float))
    assert diff.mean() < MAX_MEAN_DIFF
    # every cell shows its own patch: per-cell means agree closely
    for r, c in zip(rows, cols, strict=True):
        cell = (slice(r * 50, (r + 1) * 50), slice(c * 50, (c + 1) * 50))
        assert np.abs(fast[cell].mean((0, 1)) - slow[cell].mean((0, 1))).max() < 10


def test_rows_and_cols_follow_the_earlier_convention(coords):
    rows, cols = C.canvas_rows_cols(coords, P)
    np.testing.assert_array_equal(rows, coords[:, 1] // P - (coords[:, 1] // P).min())
    np.testing.assert_array_equal(cols, coords[:, 0] // P - (coords[:, 0] // P).min())
    assert rows.min() == 0 and cols.min() == 0


def test_cells_without_patch_are_white_and_torchmil_draws_on_the_canvas(slide_path, coords):
    sub = coords[::3]
    canvas, rows, cols = C.slide_canvas(slide_path, sub, P, cell_size=20)  # a path works too
    occupied = np.zeros((rows.max() + 1, cols.max() + 1), bool)
    occupied[rows, cols] = True
    for r, c in np.argwhere(~occupied):
        assert (canvas[r * 20 : (r + 1) * 20, c * 20 : (c + 1) * 20] == 255).all()
    values = np.linspace(0, 1, len(sub))
    heat = draw_heatmap_wsi(canvas, values, 20, rows, cols)
    assert heat.shape == canvas.shape
    r, c = rows[-1], cols[-1]  # value 1: torchmil's red
    assert heat[r * 20 + 10, c * 20 + 10, 0] > heat[r * 20 + 10, c * 20 + 10, 1]


@pytest.mark.slow
def test_patches_off_the_grid(slide_path, coords):
    shifted = coords[(coords[:, 0] + 300 + P <= W0) & (coords[:, 1] + 200 + P <= H0)] + [300, 200]
    with openslide.OpenSlide(str(slide_path)) as slide:
        fast, rows, cols = C.slide_canvas(slide, shifted, P, cell_size=32)
        slow, *_ = slide_canvas_per_patch(slide, shifted, P, cell_size=32)
    assert fast.shape == slow.shape
    assert np.abs(fast.astype(float) - slow.astype(float)).mean() < MAX_MEAN_DIFF


def test_chosen_level_and_empty_bag(slide_path, coords):
    with openslide.OpenSlide(str(slide_path)) as slide:
        a, *_ = C.slide_canvas(slide, coords, P, cell_size=50, level=2)
        b, *_ = C.slide_canvas(slide, coords, P, cell_size=50)
        empty, rows, cols = C.slide_canvas(slide, np.zeros((0, 2), np.int64), P, cell_size=50)
        with pytest.raises(ValueError, match="level 9"):
            C.slide_canvas(slide, coords, P, level=9)
    assert np.abs(a.astype(float) - b.astype(float)).mean() < 4
    assert empty.shape == (50, 50, 3) and (empty == 255).all() and len(rows) == len(cols) == 0


def test_bad_input(tmp_path, slide_path, coords):
    with pytest.raises(FileNotFoundError):
        C.slide_canvas(tmp_path / "missing.tif", coords, P)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00broken")
    with pytest.raises(ValueError, match="cannot read slide"):
        C.slide_canvas(tmp_path / "broken.tif", coords, P)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        C.slide_canvas(slide_path, coords[:, :1], P)
    with pytest.raises(ValueError, match="cell_size"):
        C.slide_canvas(slide_path, coords, P, cell_size=0)


def test_overlay_on_thumbnail(slide_path, coords):
    values = np.zeros(len(coords))
    values[0] = 1.0
    values[1] = np.nan
    with openslide.OpenSlide(str(slide_path)) as slide:
        thumb = np.asarray(slide.get_thumbnail((1000, 1000)).convert("RGB"))
        out = C.overlay_on_thumbnail(slide, coords, values, P, alpha=0.6)
        # the same from a thumbnail array and the level-0 size
        out2 = C.overlay_on_thumbnail(
            thumb, coords, values, P, level0_size=slide.dimensions, alpha=0.6
        )
    assert out.shape == thumb.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, out2)
    sx, sy = thumb.shape[1] / W0, thumb.shape[0] / H0

    def centre(i):
        x, y = coords[i]
        return int((y + P / 2) * sy), int((x + P / 2) * sx)

    cmap = matplotlib.colormaps["RdYlGn_r"]
    for i in (0, 2):  # value 1 -> red end, value 0 -> green end, blended with alpha
        y, x = centre(i)
        expected = 0.4 * thumb[y, x] + 0.6 * 255 * np.array(cmap(values[i])[:3])
        np.testing.assert_allclose(out[y, x], expected, atol=1)
    assert cmap(1.0)[0] > 2 * cmap(1.0)[1] and cmap(0.0)[1] > 2 * cmap(0.0)[0]  # red / green
    y, x = centre(1)  # NaN -> untouched
    np.testing.assert_array_equal(out[y, x], thumb[y, x])
    # glass far from any patch is untouched
    far = np.ones(thumb.shape[:2], bool)
    for i in range(len(coords)):
        x0, y0 = int(coords[i, 0] * sx), int(coords[i, 1] * sy)
        far[max(y0 - 2, 0) : y0 + int(P * sy) + 3, max(x0 - 2, 0) : x0 + int(P * sx) + 3] = False
    np.testing.assert_array_equal(out[far], thumb[far])
    with pytest.raises(ValueError, match="values for"):
        C.overlay_on_thumbnail(thumb, coords, values[:-1], P, level0_size=(W0, H0))
    with pytest.raises(ValueError, match="level0_size"):
        C.overlay_on_thumbnail(thumb, coords, values, P)


# --------------------------------------------------------------------------------------------
# the demo cohort


def test_demo_canvas_matches_the_per_patch_way(demo_dir):
    trident = demo_dir / "trident_processed" / "20x_512px_0px_overlap"
    table = pd.read_csv(demo_dir / "wsi_labels.csv")
    bag_size = {}
    for name in table["wsi_name"]:
        with h5py.File(trident / "patches" / f"{name}_patches.h5") as f:
            bag_size[name] = len(f["coords"])
    table["n"] = table["wsi_name"].map(bag_size)
    table = table.sort_values(["n", "wsi_name"])  # the smallest bags: the slow way is slow
    names = [
        *table["wsi_name"][table["wsi_label"] == 1][:2],
        *table["wsi_name"][table["wsi_label"] == 0][:1],
    ]
    for name in names:
        with h5py.File(trident / "patches" / f"{name}_patches.h5") as f:
            coords = f["coords"][:]
            p = int(f["coords"].attrs["patch_size_level0"])
        with openslide.OpenSlide(str(demo_dir / "wsis" / f"{name}.tif")) as slide:
            fast, rows, cols = C.slide_canvas(slide, coords, p, cell_size=50)
            slow, rows_ref, cols_ref = slide_canvas_per_patch(slide, coords, p, cell_size=50)
        assert fast.shape == slow.shape, name
        np.testing.assert_array_equal(rows, rows_ref)
        np.testing.assert_array_equal(cols, cols_ref)
        diff = np.abs(fast.astype(float) - slow.astype(float)).mean()
        assert diff < MAX_MEAN_DIFF, (name, diff)


def test_tiff_tile_reader_equals_openslide(slide_path, coords, monkeypatch):
    with openslide.OpenSlide(str(slide_path)) as slide:
        reader = C.TiffLevelReader.open(slide_path, slide, 3)
        assert reader is not None  # the fast path is taken for a tiled TIFF
        w, h = slide.level_dimensions[3]
        window = reader.read(w - 300, -20, 400, 200)  # crosses the page's top and right edges
        ref = to_rgb(np.asarray(slide.read_region((int((w - 300) * 8), -160), 3, (400, 200))))
        assert (window[:20] == 255).all(), "beyond the edge is white, like glass"
        reader.close()
        np.testing.assert_array_equal(window, ref)
        readers = []
        real_open = C.TiffLevelReader.open

        def spy(cls, *args):
            readers.append(real_open(*args))
            return readers[-1]

        monkeypatch.setattr(C.TiffLevelReader, "open", classmethod(spy))
        # level 3 (downsample 8): a path has tifffile decode the tiles, an open slide openslide
        fast, *_ = C.slide_canvas(slide_path, coords, P, level=3)
        assert len(readers) == 1 and readers[0] is not None
        via_openslide, *_ = C.slide_canvas(slide, coords, P, level=3)
        assert len(readers) == 1
        np.testing.assert_array_equal(fast, via_openslide)
        # the default level 4 has downsample 16.006: openslide places a window a fraction of
        # a pixel off and interpolates, the tiles are taken as they are
        fast, *_ = C.slide_canvas(slide_path, coords, P)
        via_openslide, *_ = C.slide_canvas(slide, coords, P)
        assert slide.level_downsamples[4] != 16
    assert fast.shape == via_openslide.shape
    assert np.abs(fast.astype(int) - via_openslide).max() <= 2


def test_tiff_reader_declines_what_it_cannot_read(tmp_path, slide_path):
    with openslide.OpenSlide(str(slide_path)) as slide:
        assert C.TiffLevelReader.open(tmp_path / "slide.mrxs", slide, 3) is None  # not a TIFF
        (tmp_path / "broken.tif").write_bytes(b"II*\x00broken")
        assert C.TiffLevelReader.open(tmp_path / "broken.tif", slide, 3) is None


@pytest.fixture(scope="module")
def generic_4x_slide(tmp_path_factory, slide_path) -> Path:
    """The same pixels as a generic tiled TIFF: mpp in the resolution tags, no objective
    power, levels stepping by 4 (as Aperio SVS files do)."""
    import tifffile

    with openslide.OpenSlide(str(slide_path)) as s:
        level = to_rgb(np.asarray(s.read_region((0, 0), 0, s.dimensions)))
    path = tmp_path_factory.mktemp("generic") / "slide.tif"
    with tifffile.TiffWriter(path) as tif:
        for i in range(4):
            res = 1e4 / (0.25 * 4**i)  # pixels per cm
            tif.write(
                level,
                tile=(256, 256),
                photometric="rgb",
                compression="jpeg",
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                subfiletype=0 if i == 0 else 1,
                metadata=None,
            )
            h, w = level.shape[:2]
            level = cv2.resize(
                level, (max(w // 4, 1), max(h // 4, 1)), interpolation=cv2.INTER_AREA
            )
    return path


@pytest.mark.slow
def test_canvas_and_overlay_on_a_4x_pyramid_without_objective_power(generic_4x_slide, coords):
    with openslide.OpenSlide(str(generic_4x_slide)) as slide:
        assert slide.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER) is None
        assert slide.properties.get(openslide.PROPERTY_NAME_MPP_X) is not None
        assert np.allclose(slide.level_downsamples[:3], [1, 4, 16], rtol=0.01)
        for cell in (16, 100):  # a cell between levels, and one finer than level 1
            fast, rows, cols = C.slide_canvas(slide, coords, P, cell_size=cell)
            slow, _, _ = slide_canvas_per_patch(slide, coords, P, cell_size=cell)
            assert fast.shape == slow.shape == ((rows.max() + 1) * cell, (cols.max() + 1) * cell, 3)
            assert np.abs(fast.astype(float) - slow.astype(float)).mean() < MAX_MEAN_DIFF, cell
        image = C.overlay_on_thumbnail(slide, coords, np.linspace(0, 1, len(coords)), P)
    assert image.ndim == 3 and image.dtype == np.uint8


# --------------------------------------------------------------------------------------------
# only the tiles under the patches, each once; coords that cannot be the slide's


def test_only_the_tiles_under_the_patches_are_decoded_each_once(slide_path, coords, monkeypatch):
    seen = []
    real_close = C._LevelTiles.close

    def spy_close(self):
        seen.append((list(self.decoded), self.tiff))
        real_close(self)

    monkeypatch.setattr(C._LevelTiles, "close", spy_close)
    monkeypatch.setattr(C, "_BAND_PIXELS", 64 * 64 * 16)  # a band of one patch row
    sub = coords[::2]
    C.slide_canvas(slide_path, sub, P, cell_size=50, check_tissue=False)
    ((decoded, tiff),) = seen
    assert tiff is not None and len(decoded) == len(set(decoded)), "a tile decoded twice"
    # every decoded tile lies under a patch (or the two pixels around it), and every tile
    # under a patch was decoded
    side = P / 16  # the default level: downsample 16
    under = set()
    for x, y in sub:
        x0, y0 = int(x / 16) - 2, int(y / 16) - 2
        x1, y1 = int(np.ceil((x + P) / 16)) + 2, int(np.ceil((y + P) / 16)) + 2
        for ty in range(max(y0, 0) // tiff.tile_height, (y1 - 1) // tiff.tile_height + 1):
            for tx in range(max(x0, 0) // tiff.tile_width, (x1 - 1) // tiff.tile_width + 1):
                if ty * tiff.tile_height < tiff.height and tx * tiff.tile_width < tiff.width:
                    under.add(ty * tiff.tiles_across + tx)
    assert side == 64 and set(decoded) == under
    assert len(decoded) < len(tiff.page.dataoffsets)  # not the whole level


def test_coords_beyond_the_slide_are_refused(slide_path, coords):
    beyond = coords + [0, H0 // 2]  # another, taller slide's coords
    with pytest.raises(ValueError, match=r"slide slide\.tif: \d+ of \d+ patches start outside"):
        C.slide_canvas(slide_path, beyond, P)
    with pytest.raises(ValueError, match="outside"), openslide.OpenSlide(str(slide_path)) as s:
        C.slide_canvas(s, coords - [2 * P, 0], P)  # negative x; an open slide is named too
    # TRIDENT's last row and column may reach past the edge: that is fine
    edge = np.array([[11 * P, 0], [0, 8 * P]])  # start 200 and 64 px before the edges
    canvas, *_ = C.slide_canvas(slide_path, edge, P, check_tissue=False)
    assert canvas.shape == (9 * 50, 12 * 50, 3)
    assert (canvas[:50, -50:][:, 12:] == 255).all()  # past the right edge: white


def test_another_slides_coords_are_refused(slide_path, coords):
    # coords made on a slide of another size (the coords file's level0_width/height)
    with pytest.raises(ValueError, match=r"slide\.tif is 11464 x 8256 .* made on a slide of"):
        C.slide_canvas(slide_path, coords, P, level0_size=(W0 + 1024, H0))
    C.slide_canvas(slide_path, coords, P, level0_size=(W0, H0))  # its own size is fine
    # coords inside the slide but where it has no tissue: a mostly white canvas
    taken = {tuple(c) for c in coords}
    glass = np.array(
        [(x, y) for y in range(0, H0 - P, P) for x in range(0, W0 - P, P) if (x, y) not in taken]
    )
    with pytest.raises(ValueError, match=r"slide slide\.tif: \d+ of \d+ patches show no tissue"):
        C.slide_canvas(slide_path, glass, P)
    canvas, rows, cols = C.slide_canvas(slide_path, glass, P, check_tissue=False)
    assert (canvas > 230).mean() > 0.9  # what the check spares the reader
    # the slide's own coords pass, and so does a bag with a few patches on glass
    mixed = np.concatenate([coords, glass[: len(coords) // 3]])
    C.slide_canvas(slide_path, mixed, P)


def test_demo_slide_with_another_slides_coords(demo_dir):
    """Issue 18, item 8: test_007's coords on test_006 drew a mostly white canvas."""
    from helpers.formats import level0_size, read_coords

    trident = demo_dir / "trident_processed" / "20x_512px_0px_overlap" / "patches"
    attrs, coords = read_coords(trident / "test_007_patches.h5")
    p = int(attrs["patch_size_level0"])
    with pytest.raises(ValueError, match=r"slide test_006\.tif: \d+ of 1203 patches start outside"):
        C.slide_canvas(demo_dir / "wsis" / "test_006.tif", coords, p)
    with pytest.raises(ValueError, match="test_006.tif is .* made on a slide of"):
        C.slide_canvas(demo_dir / "wsis" / "test_006.tif", coords[:10], p,
                       level0_size=level0_size(attrs))  # fmt: skip
