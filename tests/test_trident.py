"""helpers.trident follows TRIDENT v0.3.0: otsu segmenter, grid order, attribute types and
placement, magnification from the mpp, black beyond the slide's edge."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import openslide
import pytest
import tifffile

from helpers import trident as T

PINK, GLASS, GREY = (220, 150, 200), (243, 243, 241), (150, 150, 152)


def write_slide(path: Path, image: np.ndarray, mpp: float | None, aperio_mag: int | None = None):
    """A tiled pyramid (2x steps) openslide opens: generic TIFF with mpp in the resolution
    tags, or Aperio-style when ``aperio_mag`` is given."""
    h, w = image.shape[:2]
    desc = None
    if aperio_mag is not None:
        desc = (
            f"Aperio Image Library v12.0.15 \r\n{w}x{h} [0,0 {w}x{h}] (256x256) JPEG/RGB Q=80"
            f"|AppMag = {aperio_mag}" + (f"|MPP = {mpp}" if mpp else "")
        )
    with tifffile.TiffWriter(path) as tif:
        level = image
        for i in range(6):
            extra = {}
            if mpp and aperio_mag is None:
                extra = {"resolution": (1e4 / mpp / 2**i,) * 2, "resolutionunit": "CENTIMETER"}
            tif.write(
                level,
                tile=(256, 256),
                photometric="rgb",
                compression="zlib",
                description=desc if i == 0 else None,
                subfiletype=0 if i == 0 else 1,
                metadata=None,
                **extra,
            )
            level = cv2.resize(level, (level.shape[1] // 2, level.shape[0] // 2), cv2.INTER_AREA)
    return path


def paint(width: int, height: int) -> tuple[np.ndarray, dict]:
    """Glass with a pink section, a grey smear and a pink speck; returns the image and where
    each thing is (level-0 boxes ``(x, y, w, h)``)."""
    img = np.full((height, width, 3), GLASS, np.uint8)
    rng = np.random.default_rng(0)
    where = {
        "section": (width // 4, height // 4, width // 2, height // 2),  # x, y, w, h
        "grey": (int(width * 0.8), int(height * 0.1), width // 10, height // 10),
        "speck": (int(width * 0.1), int(height * 0.85), 40, 40),
    }
    x, y, w, h = where["section"]
    img[y : y + h, x : x + w] = PINK
    x, y, w, h = where["grey"]
    img[y : y + h, x : x + w] = GREY
    x, y, w, h = where["speck"]
    img[y : y + h, x : x + w] = PINK
    noise = rng.integers(-6, 7, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8), where


# (an 8192 x 6144 slide: its users are marked slow)
@pytest.fixture(scope="module")
def slide_path(tmp_path_factory) -> tuple[Path, dict]:
    img, where = paint(8192, 6144)
    return write_slide(tmp_path_factory.mktemp("slides") / "s.tif", img, mpp=0.25), where


# ------------------------------------------------------------------------------------------
# the otsu segmenter


def between_class_variance(values: np.ndarray, bins: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Otsu's criterion by definition, on the histogram: for each bin centre t, the weight
    of bins <= t times the weight above times the squared difference of their means."""
    hist, edges = np.histogram(values, bins=bins, range=(values.min(), values.max()))
    centres = (edges[:-1] + edges[1:]) / 2
    var = np.zeros(bins - 1)
    for k in range(bins - 1):
        lo, hi = hist[: k + 1], hist[k + 1 :]
        if lo.sum() and hi.sum():
            m0 = (lo * centres[: k + 1]).sum() / lo.sum()
            m1 = (hi * centres[k + 1 :]).sum() / hi.sum()
            var[k] = lo.sum() * hi.sum() * (m0 - m1) ** 2
    return centres[:-1], var


def test_otsu_threshold_is_the_between_class_variance_maximum():
    rng = np.random.default_rng(1)
    for _ in range(5):
        values = np.concatenate(
            [rng.normal(rng.uniform(60, 120), 10, 3000), rng.normal(rng.uniform(180, 240), 8, 5000)]
        )
        centres, var = between_class_variance(values)
        ours = T.otsu_threshold(values)
        k = int(np.argmin(np.abs(centres - ours)))
        assert centres[k] == pytest.approx(ours)
        assert var[k] >= var.max() * (1 - 1e-9)  # a maximum (ties differ only by rounding)
    assert T.otsu_threshold(np.full(10, 7.0)) == 7.0


def test_tissue_in_tile_whitens_grey_and_dark_drops_specks_fills_small_holes():
    tile = np.full((512, 512, 3), GLASS, np.uint8)
    tile[100:400, 100:400] = PINK  # tissue
    tile[200:230, 200:230] = GLASS  # a 900-px hole: filled
    tile[250:350, 250:350] = GLASS  # a 10,000-px hole: kept
    tile[20:60, 420:500] = GREY  # grey smear (saturation ~0): not tissue
    tile[440:470, 20:60] = (40, 30, 60)  # dark pen (value <= 85): not tissue
    tile[470:476, 470:476] = PINK  # a 36-px speck: dropped
    tile[:, 500:] = 0  # black padding beyond the slide's edge: background
    rng = np.random.default_rng(2)
    tile = np.clip(tile + rng.integers(-4, 5, tile.shape) * (tile > 0), 0, 255).astype(np.uint8)
    m = T.tissue_in_tile(tile)
    assert m.dtype == bool and m.shape == (512, 512)
    assert m[110:190, 110:190].all() and m[210:220, 210:220].all()
    assert not m[260:340, 260:340].any()
    assert not m[20:60, 420:500].any() and not m[440:470, 20:60].any()
    assert not m[470:476, 470:476].any() and not m[:, 500:].any()
    assert not m[:90].any()


@pytest.mark.slow
def test_segment_tissue_on_a_slide(slide_path):
    path, where = slide_path
    with openslide.OpenSlide(str(path)) as s:
        mask, downsample = T.segment_tissue(s)
        w0, h0 = s.dimensions
    # 1.25x is 8 um/px = 32 level-0 px at 0.25 mpp: 192 px high, then resized to 2,000
    assert mask.shape[0] == T.CONTOUR_HEIGHT
    assert downsample == pytest.approx(32 * round(h0 / 32) / T.CONTOUR_HEIGHT)
    assert mask.shape[1] == round(round(w0 / 32) * T.CONTOUR_HEIGHT / round(h0 / 32))

    def frac(box):
        x, y, w, h = (int(v / downsample) for v in box)
        return mask[y : y + h, x : x + w].mean()

    assert frac(where["section"]) > 0.97
    assert frac(where["grey"]) == 0
    # the 40 x 40 level-0 speck is ~1 px at 1.25x: dropped within its tile
    assert frac(where["speck"]) == 0
    assert mask.mean() == pytest.approx(0.25, abs=0.02)


def test_fill_and_drop_fills_holes_and_drops_small_pieces():
    m = np.zeros((400, 600), np.uint8)
    cv2.rectangle(m, (100, 100), (300, 300), 255, -1)
    cv2.rectangle(m, (150, 150), (250, 250), 0, -1)  # a hole: filled
    cv2.rectangle(m, (500, 50), (503, 53), 255, -1)  # 16 px -> 400 px at 2,000/400: dropped
    out = T._fill_and_drop(m, T.MIN_CONTOUR_AREA)
    assert out.shape == (2000, 3000)
    assert out[1000, 1000] and out[600, 600]
    assert not out[255:270, 2500:2515].any()


# ------------------------------------------------------------------------------------------
# magnification, grid, attributes, files


@pytest.mark.parametrize(
    ("mpp", "aperio", "expected"),
    [(0.243, None, 40), (0.226, None, 40), (0.499, None, 20), (0.25, 20, 40), (None, 20, 20)],
)
def test_level0_magnification_comes_from_the_mpp_first(tmp_path, mpp, aperio, expected):
    img = np.full((512, 512, 3), 240, np.uint8)
    path = write_slide(tmp_path / "m.tif", img, mpp=mpp, aperio_mag=aperio)
    with openslide.OpenSlide(str(path)) as s:
        assert T.level0_magnification(s) == expected


def test_level0_magnification_without_mpp_or_power_is_an_error(tmp_path):
    path = write_slide(tmp_path / "bare.tif", np.full((512, 512, 3), 240, np.uint8), mpp=None)
    with openslide.OpenSlide(str(path)) as s, pytest.raises(ValueError, match="neither"):
        T.level0_magnification(s)


def test_patch_grid_is_row_major_and_keeps_cells_crossing_the_border():
    tissue = np.zeros((100, 100), bool)
    tissue[10:90, 40:100] = True  # reaches the right edge
    coords = T.patch_grid(tissue, 10.0, (995, 1000), 256)
    order = np.lexsort((coords[:, 0], coords[:, 1]))
    assert (order == np.arange(len(coords))).all()
    assert coords[:, 0].max() == 768 and 768 + 256 > 995  # the last column crosses the edge
    assert coords[0].tolist() == [256, 0]


@pytest.mark.slow
def test_coords_attributes_have_tridents_types(slide_path):
    path, _ = slide_path
    with openslide.OpenSlide(str(path)) as s:
        a = T.coords_attributes(s, "s", "/job/20x_512px_0px_overlap")
    assert a["patch_size_level0"] == 1024.0 and isinstance(a["patch_size_level0"], float)
    assert a["target_magnification"] == 20.0 and isinstance(a["target_magnification"], float)
    assert a["level0_magnification"] == 40 and isinstance(a["level0_magnification"], int)
    assert isinstance(a["patch_size"], int) and isinstance(a["overlap"], int)


@pytest.mark.slow
def test_files_put_attributes_where_trident_does(tmp_path, slide_path):
    path, _ = slide_path
    coords = np.array([[0, 0], [1024, 0], [0, 1024]], np.int64)
    with openslide.OpenSlide(str(path)) as s:
        attrs = T.coords_attributes(s, "s", tmp_path)
    T.save_coords(tmp_path / "s_patches.h5", coords, attrs)
    feats = np.ones((3, 8), np.float16)
    T.save_features(tmp_path / "f" / "s.h5", feats, coords, attrs, "uni_v1")
    with h5py.File(tmp_path / "s_patches.h5", "r") as f:
        assert dict(f.attrs) == {} and f["coords"].chunks == (1, 2)
        assert f["coords"].attrs["patch_size_level0"].dtype == np.float64
    with h5py.File(tmp_path / "f" / "s.h5", "r") as f:
        assert dict(f.attrs) == {}
        assert dict(f["features"].attrs) == {
            "name": "s",
            "savetodir": str(tmp_path / "f"),
            "encoder": "uni_v1",
        }
        assert f["features"].dtype == np.float16 and f["features"].chunks == (1, 8)
        assert np.array_equal(f["coords"][:], coords)
        assert f["coords"].attrs["target_magnification"] == 20.0


@pytest.mark.slow
def test_read_patches_pads_beyond_the_edge_with_black_as_trident(slide_path):
    path, _ = slide_path
    with openslide.OpenSlide(str(path)) as s:
        w0, h0 = s.dimensions
        xy = np.array([[w0 - 512, 0]])
        black = T.read_patches(s, xy, 1024, 512)
        white = T.read_patches(s, xy, 1024, 512, background="white")
        with pytest.raises(ValueError):
            T.read_patches(s, xy, 1024, 512, background="grey")
    assert black.shape == (1, 512, 512, 3)
    assert (black[0, :, 256:] == 0).all() and (white[0, :, 256:] == 255).all()
    assert np.array_equal(black[0, :, :256], white[0, :, :256])


@pytest.mark.slow
def test_read_at_magnification_and_whitened_grey_for_figures(slide_path):
    path, where = slide_path
    with openslide.OpenSlide(str(path)) as s:
        img, downsample = T.read_at_magnification(s)
        w0, h0 = s.dimensions
    assert downsample == pytest.approx(32.0) and img.shape == (round(h0 / 32), round(w0 / 32), 3)
    grey = T.whitened_grey(img)
    x, y, w, h = (int(v / downsample) for v in where["grey"])
    smear = grey[y + 1 : y + h - 1, x + 1 : x + w - 1]
    assert (smear > 254.9).mean() > 0.99  # the grey smear is whitened
    x, y, w, h = (int(v / downsample) for v in where["section"])
    assert grey[y + 2 : y + h - 2, x + 2 : x + w - 2].max() < T.otsu_threshold(grey)
