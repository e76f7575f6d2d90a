"""The demo cohort: files openslide and torchmil read, in TRIDENT's formats, and ground truth
that agrees with the pixels."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import openslide
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from helpers import demo, synth
from helpers.formats import COORDS_ATTRIBUTES
from helpers.labels import read_polygons, tumor_fraction_from_xml
from helpers.trident import read_level

REPO = Path(__file__).resolve().parents[1]
COORD_ATTRS = set(COORDS_ATTRIBUTES)
P0 = demo.PATCH_SIZE_LEVEL0  # 512 level-0 px at 20x (0.5 um/px)


@pytest.fixture(scope="module")
def cohort(demo_dir):
    table = pd.read_csv(demo_dir / "wsi_labels.csv")
    return demo_dir, demo.CohortPaths(demo_dir), table


def test_layout_and_csvs(cohort):
    root, paths, table = cohort
    assert list(table.columns) == ["wsi_name", "wsi_label"]
    train, test = pd.read_csv(root / "train.csv"), pd.read_csv(root / "test.csv")
    assert len(train) + len(test) == len(table) >= 50
    assert len(test) > 20, "more test slides than the 20 of cohort version 3"
    assert set(train.wsi_name) | set(test.wsi_name) == set(table.wsi_name)
    assert all(n.startswith(("normal_", "tumor_")) for n in train.wsi_name)
    assert all(n.startswith("test_") for n in test.wsi_name)
    assert all(train.wsi_label[train.wsi_name.str.startswith("tumor_")] == 1)
    assert 0.3 <= table.wsi_label.mean() <= 0.45
    for name, label in zip(table.wsi_name, table.wsi_label, strict=True):
        assert paths.wsi(name).exists() and paths.mask(name).exists()
        assert paths.thumbnail_path(name).exists()
        assert paths.xml(name).exists() == bool(label)


def test_openslide_reads_every_slide(cohort):
    _, paths, table = cohort
    for name in table.wsi_name:
        with openslide.OpenSlide(str(paths.wsi(name))) as slide:
            assert slide.properties["openslide.vendor"] == "aperio"
            assert slide.level_count >= 4
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.5)
            assert float(slide.properties[openslide.PROPERTY_NAME_MPP_Y]) == pytest.approx(0.5)
            assert slide.properties[openslide.PROPERTY_NAME_OBJECTIVE_POWER] == "20"
            downsamples = slide.level_downsamples
            assert downsamples[:4] == pytest.approx([1, 2, 4, 8], rel=1e-3)
            size, n_levels = slide.dimensions, slide.level_count
        with openslide.OpenSlide(str(paths.mask(name))) as mask:
            assert mask.dimensions == size
            assert mask.level_count == n_levels


def test_h5_files_match_formats(cohort):
    _, paths, table = cohort
    for name in table.wsi_name:
        with openslide.OpenSlide(str(paths.wsi(name))) as slide:
            width, height = slide.dimensions
        with h5py.File(paths.coords_path(name), "r") as f:
            assert list(f.keys()) == ["coords"]
            coords = f["coords"]
            assert coords.dtype == np.int64 and coords.ndim == 2 and coords.shape[1] == 2
            attrs = dict(coords.attrs)
            assert set(attrs) == COORD_ATTRS
            assert attrs["patch_size"] == 512 and attrs["patch_size_level0"] == P0
            assert attrs["level0_magnification"] == 20 and attrs["overlap"] == 0
            assert isinstance(attrs["target_magnification"], float)
            assert attrs["target_magnification"] == 20.0
            assert attrs["name"] == name
            assert Path(attrs["savetodir"]) == paths.coords_path(name).parent
            assert (attrs["level0_width"], attrs["level0_height"]) == (width, height)
            xy = coords[:]
        assert (xy % P0 == 0).all(), f"grid starts at (0, 0) with step {P0}"
        assert len(np.unique(xy, axis=0)) == len(xy)
        assert (xy >= 0).all(), name
        # no patch reaches beyond the slide's edge (no padding read into a bag)
        assert (xy[:, 0] + P0 <= width).all() and (xy[:, 1] + P0 <= height).all(), name
        with h5py.File(paths.features_path(name), "r") as f:
            assert set(f.keys()) == {"features", "coords"}
            assert f["features"].dtype in (np.float16, np.float32)  # as TRIDENT writes them
            assert f["features"].shape[0] == len(xy)
            assert np.isfinite(f["features"][:]).all()
            assert np.array_equal(f["coords"][:], xy), "features rows follow the coords rows"
            assert dict(f["coords"].attrs) == attrs
            fa = f["features"].attrs  # as TRIDENT v0.3: on the features dataset
            assert fa["name"] == name and fa["encoder"] == demo.DEMO_ENCODER
            assert Path(fa["savetodir"]) == paths.features_path(name).parent
        with h5py.File(paths.patch_labels_path(name), "r") as f:
            labels = f["patch_labels"][:]
        assert labels.shape == (len(xy),) and np.issubdtype(labels.dtype, np.integer)


@pytest.fixture(scope="module")
def summary(demo_dir) -> pd.DataFrame:
    return demo.cohort_summary(demo_dir)


def test_bags_at_camelyon16_scale(summary):
    """Issue 11: a mean bag of at least 250 patches, at least three slides of 1,000 or more
    (the large sections, and only they)."""
    assert summary.n_patches.mean() >= 250, summary.n_patches.describe()
    assert (summary.n_patches >= 1000).sum() >= 3
    assert (summary.large == (summary.n_patches >= 1000)).all()
    assert summary.n_patches.min() >= 50


def test_kinds_of_slides(summary):
    assert set(summary.kind) == {"normal", "macro", "micro", "itc"}
    assert (summary.label == (summary.kind != "normal")).all()
    normal = summary[summary.label == 0]
    assert (normal.n_tumor_patches == 0).all()
    tumour = summary[summary.kind.isin(["macro", "micro"])]
    assert (tumour.n_tumor_patches >= 1).all(), "every metastasis has a tumour patch"
    assert 1 <= (summary.kind == "itc").sum() <= 2, "one or two slides with only ITC"
    for split in ("train", "test"):
        kinds = set(summary.kind[summary.split == split])
        assert {"macro", "micro", "normal"} <= kinds, split


def test_micro_metastases_are_needles_in_a_haystack(summary):
    """1-4 positive patches, at most 1% of the bag, each micro slide; macro lesions cover
    more of their bag than any micro lesion."""
    micro, macro = summary[summary.kind == "micro"], summary[summary.kind == "macro"]
    assert len(micro) >= 4
    assert micro.n_tumor_patches.between(1, demo.MAX_MICRO_PATCHES).all(), micro
    assert (micro.tumor_fraction <= 0.01).all(), micro
    assert macro.tumor_fraction.min() > 5 * micro.tumor_fraction.max()


def test_itc_slides_are_positive_without_a_positive_patch(cohort, summary):
    """Isolated tumour cells, as CAMELYON16 has them: the slide is positive and annotated
    (XML, tumour in the mask), but no patch is half tumour, so no patch label is 1."""
    root, paths, table = cohort
    itc = summary[summary.kind == "itc"]
    labels = dict(zip(table.wsi_name, table.wsi_label, strict=True))
    for name in itc.name:
        assert labels[name] == 1 and paths.xml(name).exists()
        with h5py.File(paths.patch_labels_path(name), "r") as f:
            assert f["patch_labels"][:].sum() == 0, name
        with h5py.File(paths.coords_path(name), "r") as f:
            coords = f["coords"][:]
        fractions = tumor_fraction_from_xml(paths.xml(name), coords, P0)
        assert 0 < fractions.max() < 0.5, (name, fractions.max())
        with openslide.OpenSlide(str(paths.mask(name))) as mask:
            assert (read_level(mask, 2)[..., 0] == 2).any(), f"{name}: no tumour in the mask"


def test_both_centres_in_both_splits(summary):
    """Stain and scanner variation: slides of both centres, normal and tumour, in train and
    in test (a model cannot tell tumour by the centre)."""
    assert set(summary.centre) == set(synth.CENTRES) == {"A", "B"}
    for split in ("train", "test"):
        part = summary[summary.split == split]
        assert set(part.centre) == {"A", "B"}, split
    train = summary[summary.split == "train"]
    for label in (0, 1):
        assert set(train.centre[train.label == label]) == {"A", "B"}, label


def _specs(root: Path) -> list[demo.SlideSpec]:
    """The slides of the cohort at ``root``, as its manifest's seed and sizes plan them."""
    info = json.loads((root / demo.MANIFEST).read_text())
    return demo.plan_cohort(info["seed"], tuple(map(tuple, info["sizes"])))


def test_torchmil_loads_the_cohort(demo_settings, demo_dir):
    from torchmil.datasets import TridentWSIDataset

    cfg = demo_settings
    table = pd.read_csv(cfg.train_csv)
    dataset = TridentWSIDataset(
        base_path=cfg.base_path,
        labels_path=str(cfg.train_csv),
        feature_extractor=cfg.encoder,
        patch_labels_path=str(cfg.patch_labels_dir) + "/",
        wsi_names=list(table.wsi_name),
        bag_keys=["X", "Y", "y_inst", "adj", "coords"],
        patch_size=P0,
        wsi_name_col="wsi_name",
        wsi_label_col="wsi_label",
    )
    assert len(dataset) == len(table)
    labels = dict(zip(table.wsi_name, table.wsi_label, strict=True))
    kinds = {s.name: s.kind for s in _specs(demo_dir)}
    for i, name in enumerate(dataset.get_bag_names()):
        bag = dataset[i]
        n = bag["X"].shape[0]
        assert bag["X"].ndim == 2 and bag["y_inst"].shape == (n,)
        assert bag["coords"].shape == (n, 2) and bag["adj"].shape == (n, n)
        assert int(bag["Y"][0]) == labels[name]
        # a slide with isolated tumour cells only is positive without a positive patch
        assert int(bag["y_inst"].max()) == int(labels[name] and kinds[name] != "itc")
        with h5py.File(cfg.coords_path(name), "r") as f:
            assert np.array_equal(bag["coords"].numpy(), f["coords"][:] // P0)


def test_masks_xml_and_labels_agree(cohort, demo_dir):
    root, paths, table = cohort
    kinds = {s.name: s.kind for s in _specs(demo_dir)}
    for name in table.wsi_name[table.wsi_label == 1]:
        with openslide.OpenSlide(str(paths.mask(name))) as mask:
            # ITC clusters are 60-120 level-0 px across: compared at downsample 2, not 8
            level = 1 if kinds[name] == "itc" else 3
            m = read_level(mask, level)[..., 0]
            scale = mask.level_downsamples[level]
        drawn = np.zeros_like(m)
        for poly in read_polygons(paths.xml(name))[0]:
            cv2.fillPoly(drawn, [np.round(poly / scale * 16).astype(np.int32)], 1, shift=4)
        tumour = m == 2
        iou = (tumour & (drawn > 0)).sum() / (tumour | (drawn > 0)).sum()
        assert iou > 0.95, f"{name}: mask and XML disagree (IoU {iou:.3f})"
        with h5py.File(paths.coords_path(name), "r") as f:
            coords = f["coords"][:]
        with h5py.File(paths.patch_labels_path(name), "r") as f:
            stored = f["patch_labels"][:]
        from_xml = tumor_fraction_from_xml(paths.xml(name), coords, P0) > 0.5
        assert (from_xml == stored.astype(bool)).mean() >= 0.97


def test_a_linear_probe_finds_tumour_patches(cohort, summary):
    """Issue 11: tumour patches are linearly separable from normal ones, as with a foundation
    model's features: a logistic-regression probe on the stored features of the training
    slides reaches a patch AUROC of at least 0.95 on the test slides. No single feature
    does as well (every dimension carries a little of everything): which statistics tell
    tumour from normal is measured in tests/test_demo_texture.py."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, paths, _ = cohort
    data = {}
    for split in ("train", "test"):
        feats, labels = [], []
        for name in summary.name[summary.split == split]:
            with h5py.File(paths.features_path(name), "r") as f:
                feats.append(f["features"][:])
            with h5py.File(paths.patch_labels_path(name), "r") as f:
                labels.append(f["patch_labels"][:])
        data[split] = np.concatenate(feats), np.concatenate(labels)
        assert data[split][0].shape[1] >= 256, "feature dimension of a foundation model"
        assert 0 < data[split][1].sum() < len(data[split][1])
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
    probe.fit(*data["train"])
    feats, labels = data["test"]
    auroc = roc_auc_score(labels, probe.predict_proba(feats)[:, 1])
    assert auroc >= 0.95, auroc
    single = [roc_auc_score(labels, feats[:, j]) for j in range(feats.shape[1])]
    assert max(max(a, 1 - a) for a in single) < auroc


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "helpers.demo", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


@pytest.mark.slow
def test_cli_rejects_bad_input(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    res = _run_cli("--out", str(a_file))
    assert res.returncode == 2 and "is a file" in res.stderr
    assert a_file.read_text() == "keep me"

    res = _run_cli("--out", str(tmp_path / "x"), "--seed", "abc")
    assert res.returncode == 2 and "whole number" in res.stderr

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.docx").write_text("precious")
    res = _run_cli("--out", str(busy))
    assert res.returncode == 2 and "not empty" in res.stderr
    assert (busy / "thesis.docx").read_text() == "precious"


def test_unwritable_folder_is_reported(tmp_path, monkeypatch):
    """A folder ``os.access`` says is not writable (faked: CI runs as root) is refused."""
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    with pytest.raises(demo.CohortError, match="not writable"):
        demo.make_cohort(tmp_path / "demo", quiet=True)


def test_demo_features_match_a_fresh_run(tmp_path, demo_dir):
    """Regenerating one slide of the book's cohort elsewhere gives byte-identical features,
    whatever torch's thread count (the cohort's worker processes use one)."""
    import torch

    info = json.loads((demo_dir / demo.MANIFEST).read_text())
    # an ITC slide: a small section (fast), with lesions placed at random
    spec = next(s for s in _specs(demo_dir) if s.kind == "itc" and not s.large)
    paths = demo.CohortPaths(tmp_path)
    demo.make_slide(spec, paths, info["seed"])
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # tumor_016 of version 5 differs in 3 values without the pin
    try:
        demo.process_slide(spec, paths)
        assert torch.get_num_threads() == 2, "process_slide gives the threads back"
    finally:
        torch.set_num_threads(threads)
    with h5py.File(paths.features_path(spec.name), "r") as a:
        with h5py.File(demo.CohortPaths(demo_dir).features_path(spec.name), "r") as b:
            assert a["features"][:].tobytes() == b["features"][:].tobytes()
            assert np.array_equal(a["coords"][:], b["coords"][:])


@pytest.mark.slow
def test_two_processes_making_the_same_cohort(tmp_path):
    """Two notebooks starting at once on a fresh machine: one builds, the other waits."""
    out = tmp_path / "shared"
    code = (
        "from helpers.demo import make_cohort; "
        f"make_cohort({str(out)!r}, seed=3, sizes=((0, 1), (1, 0)), workers=1, quiet=True)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert json.loads((out / demo.MANIFEST).read_text())["complete"] is True
    assert len(demo.cohort_summary(out)) == 2
