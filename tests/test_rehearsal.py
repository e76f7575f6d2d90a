"""The rehearsal folder (tests/rehearsal.py) has the shapes of real CAMELYON16 + TRIDENT output.

Both variants are the folders ``make rehearsal`` writes (the Makefile's ``REHEARSAL_DIR`` and
``REHEARSAL_NOLABELS_DIR``): reused when they are current, built there once otherwise (about a
minute each on two idle cores). Every test only reads them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import numpy as np
import openslide
import pandas as pd
import pytest
from PIL import Image

from helpers.formats import COORDS_ATTRIBUTES

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def _load_rehearsal():
    """tests/rehearsal.py by path (tests/ is not a package), registered as ``rehearsal`` so
    its worker processes can import it by that name."""
    if "rehearsal" in sys.modules:
        return sys.modules["rehearsal"]
    spec = importlib.util.spec_from_file_location("rehearsal", HERE / "rehearsal.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["rehearsal"] = module
    spec.loader.exec_module(module)
    return module


R = _load_rehearsal()


def makefile_folder(variable: str) -> Path:
    """The folder the Makefile's ``VARIABLE ?= path`` names (so tests reuse what make built)."""
    text = (ROOT / "Makefile").read_text()
    found = re.search(rf"^{variable}\s*\?=\s*(\S+)\s*$", text, re.MULTILINE)
    if found is None:
        raise LookupError(f"the Makefile sets no {variable}")
    return ROOT / found.group(1)


TRIDENT = Path("trident_processed") / R.PATCH_DIR


@pytest.fixture(scope="session")
def rehearsal() -> Path:
    out = makefile_folder("REHEARSAL_DIR")
    R.make_rehearsal(out, patch_labels=True)
    return out


@pytest.fixture(scope="session")
def rehearsal_nolabels() -> Path:
    out = makefile_folder("REHEARSAL_NOLABELS_DIR")
    R.make_rehearsal(out, patch_labels=False)
    return out


@pytest.fixture(scope="session")
def slides(rehearsal) -> pd.DataFrame:
    return pd.DataFrame(json.loads((rehearsal / R.MANIFEST).read_text())["slides"])


def h5_attrs(obj) -> dict:
    return dict(obj.attrs.items())


# ------------------------------------------------------------------------------------------
# slides


def test_openslide_opens_every_slide_with_the_planned_pyramid(rehearsal, slides):
    for row in slides.itertuples():
        with openslide.OpenSlide(str(rehearsal / "wsis" / row.file)) as s:
            vendor = s.properties.get(openslide.PROPERTY_NAME_VENDOR)
            assert vendor == ("aperio" if row.format == "aperio" else "generic-tiff"), row.name
            assert s.dimensions == (row.width, row.height)
            assert s.level_count == row.levels
            steps = np.array(s.level_downsamples[1:]) / np.array(s.level_downsamples[:-1])
            assert np.allclose(steps, row.level_step, rtol=0.01), (row.name, steps)
            mpp = float(s.properties[openslide.PROPERTY_NAME_MPP_X])
            assert mpp == pytest.approx(row.mpp, abs=1e-4)
            power = s.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)
            if row.objective_power is None or np.isnan(row.objective_power):
                assert power is None, row.name
            else:
                assert int(power) == row.objective_power
            assert max(s.level_dimensions[-1]) <= 1000 * row.level_step


def test_the_formats_real_data_brings_are_all_there(slides):
    generic = slides[slides.format == "generic"]
    aperio = slides[slides.format == "aperio"]
    assert len(generic) and (generic.level_step == 2).all()
    assert len(aperio) and (aperio.level_step == 4).all()
    assert aperio.objective_power.isna().any() and aperio.objective_power.notna().any()
    native20 = slides[slides.mpp > 0.45]
    assert len(native20) and (native20.patch_size_level0 == 512).all()
    assert (slides.loc[slides.mpp < 0.3, "patch_size_level0"] == 1024).all()
    big = slides[(slides.width >= 97_000) & (slides.height >= 200_000)]
    assert len(big) == 1 and big.levels.iloc[0] >= 9
    assert slides.n_patches.min() < 400 and slides.n_patches.max() > 4000


def test_slides_show_tissue_and_tumour_where_the_geometry_says(rehearsal, slides):
    """Level-0 pixels: glass is near white, tissue pink, tumour purple (checked on the big
    slide at the centre of a tumour patch and of a normal tissue patch)."""
    row = slides.loc[slides.width.idxmax()]
    with h5py.File(rehearsal / TRIDENT / "patch_labels" / f"{row['name']}.h5", "r") as f:
        fractions = f["tumor_fraction"][:]
    with h5py.File(rehearsal / TRIDENT / "patches" / f"{row['name']}_patches.h5", "r") as f:
        coords = f["coords"][:]
    p = int(row.patch_size_level0)
    with openslide.OpenSlide(str(rehearsal / "wsis" / row.file)) as s:
        mean = {}
        present = {tuple(c) for c in coords.tolist()}
        interior = [  # a normal patch whose four neighbours are patches too: inside tissue
            i
            for i, (x, y) in enumerate(coords.tolist())
            if fractions[i] == 0
            and all((x + dx, y + dy) in present for dx, dy in ((p, 0), (-p, 0), (0, p), (0, -p)))
        ]
        for what, i in (("tumour", np.argmax(fractions)), ("tissue", interior[0])):
            x, y = coords[i] + p // 2 - 16
            mean[what] = np.asarray(s.read_region((int(x), int(y)), 0, (32, 32)))[..., :3].mean(
                (0, 1)
            )
        glass = np.asarray(s.read_region((0, 0), 0, (32, 32)))[..., :3].mean((0, 1))
    assert glass.min() > 230
    assert mean["tissue"][1] < 190 and mean["tissue"][0] > 200  # pink
    assert mean["tumour"][0] < 170  # purple: darker red channel


def test_masks_match_their_slides_and_are_camelyon_like(rehearsal, slides):
    for row in slides[slides.label_source.isin(["mask", "both"])].itertuples():
        path = rehearsal / "masks" / f"{row.name}_mask.tif"
        with openslide.OpenSlide(str(path)) as m:
            assert m.dimensions == (row.width, row.height)
            low = np.asarray(m.read_region((0, 0), m.level_count - 1, m.level_dimensions[-1]))
            values = set(np.unique(low[..., 0]).tolist())
            assert values <= {0, 1, 2} and {0, 1} <= values, (row.name, values)


# ------------------------------------------------------------------------------------------
# TRIDENT files


def test_coords_files_have_tridents_types_placement_and_order(rehearsal, slides):
    for row in slides.itertuples():
        path = rehearsal / TRIDENT / "patches" / f"{row.name}_patches.h5"
        with h5py.File(path, "r") as f:
            assert list(f.keys()) == ["coords"] and h5_attrs(f) == {}
            dset = f["coords"]
            assert dset.dtype == np.int64 and dset.shape == (row.n_patches, 2)
            assert dset.chunks == (1, 2) and dset.maxshape == (None, 2)
            a = h5_attrs(dset)
            coords = dset[:]
        assert set(a) == set(COORDS_ATTRIBUTES)
        for key in ("patch_size", "level0_magnification", "overlap", "level0_width"):
            assert isinstance(a[key], np.integer), key
        for key in ("patch_size_level0", "target_magnification"):
            assert isinstance(a[key], np.floating), key
        assert a["patch_size_level0"] == row.patch_size_level0
        assert (a["level0_width"], a["level0_height"]) == (row.width, row.height)
        assert a["name"] == row.name
        assert Path(a["savetodir"]) == (rehearsal / TRIDENT).resolve()
        # row by row: sorted by y, then x; on the grid from (0, 0); every corner on the slide
        order = np.lexsort((coords[:, 0], coords[:, 1]))
        assert (order == np.arange(len(coords))).all(), row.name
        assert len(np.unique(coords, axis=0)) == len(coords)
        assert (coords % row.patch_size_level0 == 0).all()
        assert (coords[:, 0] < row.width).all() and (coords[:, 1] < row.height).all()


def test_some_patches_cross_the_slide_border(rehearsal, slides):
    crossing = 0
    for row in slides.itertuples():
        with h5py.File(rehearsal / TRIDENT / "patches" / f"{row.name}_patches.h5", "r") as f:
            c = f["coords"][:]
        crossing += int((c[:, 0] + row.patch_size_level0 > row.width).sum())
    assert crossing > 0


def test_feature_files_are_float16_with_attributes_on_the_features_dataset(rehearsal, slides):
    for row in slides.itertuples():
        path = rehearsal / TRIDENT / f"features_{R.ENCODER}" / f"{row.name}.h5"
        with (
            h5py.File(path, "r") as f,
            h5py.File(rehearsal / TRIDENT / "patches" / f"{row.name}_patches.h5", "r") as c,
        ):
            assert sorted(f.keys()) == ["coords", "features"] and h5_attrs(f) == {}
            feats = f["features"]
            assert feats.dtype == np.float16 and feats.shape == (row.n_patches, R.FEATURE_DIM)
            assert h5_attrs(feats) == {
                "name": row.name,
                "savetodir": str((rehearsal / TRIDENT / f"features_{R.ENCODER}").resolve()),
                "encoder": R.ENCODER,
            }
            assert np.array_equal(f["coords"][:], c["coords"][:])
            assert h5_attrs(f["coords"]) == h5_attrs(c["coords"])
            assert np.isfinite(feats[:].astype(np.float32)).all()


def test_thumbnails_are_written_as_trident_does(rehearsal, slides):
    for row in slides.itertuples():
        with Image.open(rehearsal / "trident_processed" / "thumbnails" / f"{row.name}.jpg") as im:
            # TRIDENT asks openslide for a thumbnail that fits (1000, h) or (w, 1000):
            # openslide keeps the aspect ratio, so the longest side can fall short by a pixel
            # or two
            assert im.format == "JPEG" and 990 <= max(im.size) <= 1000
            assert abs(im.size[0] / im.size[1] - row.width / row.height) < 0.01


def test_features_carry_a_tumour_signal(rehearsal, slides):
    """A linear read-out (the difference of class means on half the tumour slides) ranks
    the tumour patches of the other half above their normal patches."""
    from sklearn.metrics import roc_auc_score

    tumour = slides[slides.n_tumour_patches > 0].name.tolist()
    x, y = {}, {}
    for name in tumour:
        with h5py.File(rehearsal / TRIDENT / f"features_{R.ENCODER}" / f"{name}.h5", "r") as f:
            x[name] = f["features"][:].astype(np.float32)
        with h5py.File(rehearsal / TRIDENT / "patch_labels" / f"{name}.h5", "r") as f:
            y[name] = f["patch_labels"][:]
    fit, held = tumour[::2], tumour[1::2]
    xf, yf = np.concatenate([x[n] for n in fit]), np.concatenate([y[n] for n in fit])
    w = xf[yf == 1].mean(0) - xf[yf == 0].mean(0)
    xh, yh = np.concatenate([x[n] for n in held]), np.concatenate([y[n] for n in held])
    assert roc_auc_score(yh, xh @ w) > 0.95


# ------------------------------------------------------------------------------------------
# labels


def test_label_csvs_hold_both_classes_in_each_split(rehearsal, slides):
    for split in ("train", "test"):
        table = pd.read_csv(rehearsal / f"{split}.csv")
        assert list(table.columns) == ["wsi_name", "wsi_label"]
        counts = table.wsi_label.value_counts()
        assert counts.get(0, 0) >= 4 and counts.get(1, 0) >= 4, (split, counts)
        assert set(table.wsi_name) == set(slides.loc[slides.split == split, "name"])
    both = pd.read_csv(rehearsal / "wsi_labels.csv")
    assert len(both) == len(slides)


def test_tumour_label_sources_cover_xml_mask_both_and_exclusions(rehearsal, slides):
    tumour = slides[slides.label == 1]
    assert {"xml", "mask", "both"} <= set(tumour.label_source)
    assert (slides.loc[slides.label == 0, "label_source"] == "none").all()
    for row in tumour.itertuples():
        has_xml = (rehearsal / "annotations" / f"{row.name}.xml").exists()
        has_mask = (rehearsal / "masks" / f"{row.name}_mask.tif").exists()
        assert (has_xml, has_mask) == {
            "xml": (True, False),
            "mask": (False, True),
            "both": (True, True),
        }[row.label_source]
    groups = set()
    for path in (rehearsal / "annotations").glob("*.xml"):
        for a in ET.parse(path).getroot().iter("Annotation"):
            groups.add(a.get("PartOfGroup"))
            assert a.get("Type") == "Polygon"
    assert groups == {"_0", "_2"}


def test_patch_labels_made_by_the_books_tool_agree_with_the_geometry(rehearsal, slides):
    """helpers.labels (from the mask, else the XML) against the generator's own raster."""
    for row in slides.itertuples():
        with h5py.File(rehearsal / TRIDENT / "patch_labels" / f"{row.name}.h5", "r") as f:
            labels = f["patch_labels"][:]
            assert labels.shape == (row.n_patches,)
            source = f["patch_labels"].attrs["source"]
        assert (
            source
            == {"none": "none", "xml": "xml", "mask": "mask", "both": "mask"}[row.label_source]
        )
        if row.label == 0:
            assert labels.sum() == 0
            continue
        # the generator rasterises the lesions itself, 16 x 16 samples per patch: the
        # labels agree wherever its fraction is not within 0.05 of the threshold
        geo = R.slide_geometry(R.spec(row.name))
        with h5py.File(rehearsal / TRIDENT / "patches" / f"{row.name}_patches.h5", "r") as f:
            ours = R.tumour_fraction(geo, f["coords"][:], row.patch_size_level0)
        clear = np.abs(ours - 0.5) > 0.05
        assert clear.mean() > 0.99
        assert (labels[clear] == (ours[clear] > 0.5)).all(), row.name
        assert abs(int(labels.sum()) - row.n_tumour_patches) <= (~clear).sum()


def test_a_tumour_slide_has_a_lesion_but_no_positive_patch(rehearsal, slides):
    tiny = slides[(slides.label == 1) & (slides.lesion == "tiny")]
    assert len(tiny) == 1
    row = tiny.iloc[0]
    assert row.n_tumour_patches == 0 and 0 < row.max_tumour_fraction < 0.5
    with h5py.File(rehearsal / TRIDENT / "patch_labels" / f"{row['name']}.h5", "r") as f:
        assert f["patch_labels"][:].sum() == 0 and f["tumor_fraction"][:].max() > 0
    assert (
        slides.loc[(slides.label == 1) & (slides.lesion != "tiny"), "n_tumour_patches"] > 0
    ).all()


# ------------------------------------------------------------------------------------------
# variants, determinism, settings, command line


def written(root: Path) -> set[Path]:
    """The generator's files in ``root`` (not the weights that chapters run on the folder
    cached in ``models/``)."""
    files = {p.relative_to(root) for p in root.rglob("*") if p.is_file()}
    return {p for p in files if p.parts[0] != "models"}


def test_the_second_variant_has_no_patch_labels_and_the_same_files(rehearsal, rehearsal_nolabels):
    assert (rehearsal / TRIDENT / "patch_labels").is_dir()
    assert not (rehearsal_nolabels / TRIDENT / "patch_labels").exists()
    ours, theirs = written(rehearsal), written(rehearsal_nolabels)
    assert theirs == {p for p in ours if "patch_labels" not in p.parts}
    # built separately, so this also shows that the generator is deterministic
    for rel in sorted(theirs):
        a, b = rehearsal / rel, rehearsal_nolabels / rel
        if rel.suffix == ".h5":
            with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
                for key in fa:
                    assert np.array_equal(fa[key][:], fb[key][:]), rel
        elif rel.name != R.MANIFEST:
            assert a.read_bytes() == b.read_bytes(), rel


def test_the_environment_points_the_books_settings_at_the_folder(rehearsal, slides, monkeypatch):
    from helpers.settings import load_settings

    env = R.environment(rehearsal)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = load_settings()
    assert not cfg.is_demo and cfg.encoder == R.ENCODER
    for name in slides.name:
        assert cfg.wsi_path(name).exists()
        assert cfg.coords_path(name).exists() and cfg.features_path(name).exists()
        assert cfg.patch_labels_path(name).exists()
    assert cfg.train_csv.exists() and cfg.test_csv.exists()


def test_the_command_line_finds_a_complete_folder_and_prints_the_variables(rehearsal):
    run = subprocess.run(
        [sys.executable, str(HERE / "rehearsal.py"), "--out", str(rehearsal)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert f"export MIL_BOOK_JOB_DIR={(rehearsal / 'trident_processed').resolve()}" in run.stdout
    assert "export MIL_BOOK_DATA=camelyon16" in run.stdout


def test_it_refuses_to_replace_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        R.make_rehearsal(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"
