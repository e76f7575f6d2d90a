"""Loading real TRIDENT outputs: float16 features, optional patch labels, checked bags.

Every test writes a tiny TRIDENT-shaped folder (coords and features h5 files, labels CSVs,
optionally ``patch_labels/``) in ``tmp_path``; no slide image is needed to load bags.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from helpers.data import (
    bag_table,
    has_patch_labels,
    load_dataset,
    load_splits,
    read_split,
)
from helpers.evaluation import Predictions, patch_auroc, predict, slide_patch_auroc
from helpers.froc import froc_from_predictions
from helpers.models import ABMIL
from helpers.settings import Settings

ENCODER = "uni_v1"
DIM = 24


def _coords(n: int, psize: int) -> np.ndarray:
    """``n`` grid cells, row by row (by y, then x), as TRIDENT orders them."""
    width = 7
    cells = np.array([(i % width, i // width) for i in range(n)])
    return (cells * psize).astype(np.int64)


def _write_slide(
    cfg: Settings,
    name: str,
    n: int,
    psize: int = 1024,
    dtype=np.float16,
    labels: np.ndarray | None = None,
    n_features: int | None = None,
    dim: int = DIM,
    seed: int = 0,
) -> None:
    coords = _coords(n, psize)
    cfg.coords_dir.mkdir(parents=True, exist_ok=True)
    cfg.features_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(cfg.coords_path(name), "w") as f:
        d = f.create_dataset("coords", data=coords)
        d.attrs["patch_size"] = 512
        d.attrs["patch_size_level0"] = float(psize)  # TRIDENT stores floats
        d.attrs["level0_magnification"] = 40 if psize == 1024 else 20
        d.attrs["target_magnification"] = 20.0
        d.attrs["overlap"] = 0
        d.attrs["name"] = name
    rng = np.random.default_rng(seed)
    m = n if n_features is None else n_features
    with h5py.File(cfg.features_path(name), "w") as f:
        d = f.create_dataset("features", data=rng.normal(size=(m, dim)).astype(dtype))
        d.attrs["name"], d.attrs["encoder"] = name, ENCODER
        f.create_dataset("coords", data=coords[:m])
    if labels is not None:
        cfg.patch_labels_dir.mkdir(parents=True, exist_ok=True)
        with h5py.File(cfg.patch_labels_path(name), "w") as f:
            f.create_dataset("patch_labels", data=np.asarray(labels))


def _settings(root: Path) -> Settings:
    return Settings(
        source="camelyon16",
        wsi_dir=root / "wsis",
        mask_dir=None,
        annotations_dir=None,
        job_dir=root / "trident_processed",
        encoder=ENCODER,
        train_csv=root / "train.csv",
        test_csv=root / "test.csv",
    )


def _cohort(root: Path, with_labels: bool = True) -> Settings:
    """4 normal + 4 tumour training slides, 2 + 2 test slides (one tumour has no positive)."""
    cfg = _settings(root)
    rows = {"train": [], "test": []}
    for split, n_each in (("train", 4), ("test", 2)):
        for k in range(2 * n_each):
            label = int(k >= n_each)
            name = f"{split}_{k:03d}"
            n = 20 + 3 * k
            y = np.zeros(n, dtype=np.int64)
            if label and not (split == "test" and k == 2 * n_each - 1):
                y[:3] = 1
            _write_slide(cfg, name, n, labels=y if with_labels else None, seed=k)
            rows[split].append((name, label))
    for split, csv in (("train", cfg.train_csv), ("test", cfg.test_csv)):
        pd.DataFrame(rows[split], columns=["wsi_name", "wsi_label"]).to_csv(csv, index=False)
    return cfg


# ----------------------------------------------------------------------------- dtype, labels


def test_float16_features_are_cast_to_float32_once_on_load(tmp_path):
    cfg = _cohort(tmp_path)
    data = load_dataset(cfg, cfg.train_csv)
    bag = data[0]
    assert bag["X"].dtype == torch.float32
    with h5py.File(cfg.features_path(data.get_bag_names()[0])) as f:
        stored = f["features"][:]
    assert stored.dtype == np.float16
    assert torch.equal(bag["X"], torch.from_numpy(stored.astype(np.float32)))
    # and a float32 model takes them
    model = ABMIL(DIM, att_dim=8, hidden_dim=4)
    assert model(bag["X"][None]).dtype == torch.float32


def test_without_patch_labels_the_bags_have_no_y_inst_and_training_code_runs(tmp_path):
    cfg = _cohort(tmp_path, with_labels=False)
    assert not has_patch_labels(cfg)
    train, val, test = load_splits(cfg, val_frac=0.25, seed=0)
    assert all("y_inst" not in d[0].keys() for d in (train, val, test))
    table = bag_table(test)
    assert table["n_tumor_patches"].isna().all() and table["tumor_fraction"].isna().all()
    preds = predict(ABMIL(DIM, att_dim=8, hidden_dim=4), test)
    assert preds.y_inst is None and len(preds.prob) == len(test)
    with pytest.raises(ValueError, match="helpers.labels"):
        patch_auroc(preds)
    with pytest.raises(ValueError, match="helpers.labels"):
        froc_from_predictions(preds)


def test_with_patch_labels_the_bags_have_y_inst(tmp_path):
    cfg = _cohort(tmp_path)
    assert has_patch_labels(cfg)
    test = load_dataset(cfg, cfg.test_csv)
    assert test[0]["y_inst"].dtype == torch.int64
    preds = predict(ABMIL(DIM, att_dim=8, hidden_dim=4), test)
    assert [len(y) for y in preds.y_inst] == [len(s) for s in preds.inst_scores]


def test_patch_labels_for_some_slides_only_is_an_error_naming_them(tmp_path):
    cfg = _cohort(tmp_path)
    cfg.patch_labels_path("train_001").unlink()
    with pytest.raises(FileNotFoundError, match="train_001"):
        load_dataset(cfg, cfg.train_csv)
    with pytest.raises(FileNotFoundError, match="helpers.labels"):
        load_dataset(cfg, cfg.train_csv, patch_labels=True)


# ----------------------------------------------------------------------------- checked bags


def test_features_with_fewer_rows_than_coords_is_an_error_naming_both_files(tmp_path):
    cfg = _cohort(tmp_path)
    _write_slide(cfg, "train_002", 26, n_features=21, labels=np.zeros(26, int))
    with pytest.raises(ValueError, match="21 feature rows") as err:
        load_dataset(cfg, cfg.train_csv)
    assert str(cfg.features_path("train_002")) in str(err.value)
    assert str(cfg.coords_path("train_002")) in str(err.value)


def test_non_finite_features_are_an_error_naming_the_file(tmp_path):
    cfg = _cohort(tmp_path)
    with h5py.File(cfg.features_path("train_003"), "a") as f:
        x = f["features"][:]
        x[4, 2] = np.nan
        x[7, 0] = np.inf
        f["features"][...] = x
    with pytest.raises(ValueError, match="NaN or infinite") as err:
        load_dataset(cfg, cfg.train_csv)
    assert str(cfg.features_path("train_003")) in str(err.value)
    assert "[4, 7]" in str(err.value)


def test_float16_overflow_on_load_is_caught(tmp_path):
    cfg = _cohort(tmp_path)
    with h5py.File(cfg.features_path("train_000"), "a") as f:
        x = f["features"][:]
        x[0, 0] = np.float16(np.inf)  # what float16 holds after an overflow
        f["features"][...] = x
    with pytest.raises(ValueError, match="train_000"):
        load_dataset(cfg, cfg.train_csv)


def test_features_extracted_from_other_coords_is_an_error(tmp_path):
    cfg = _cohort(tmp_path)
    with h5py.File(cfg.features_path("train_001"), "a") as f:
        c = f["coords"][:]
        f["coords"][...] = c[::-1]  # same rows, another order
    with pytest.raises(ValueError, match="differ"):
        load_dataset(cfg, cfg.train_csv)


@pytest.mark.parametrize(
    ("labels", "message"),
    [(np.zeros(5, int), "5 patch labels"), (np.full(23, 2), "must be 0 or 1")],
)
def test_bad_patch_labels_are_an_error_naming_the_file(tmp_path, labels, message):
    cfg = _cohort(tmp_path)
    with h5py.File(cfg.patch_labels_path("train_001"), "w") as f:
        f.create_dataset("patch_labels", data=labels)
    with pytest.raises(ValueError, match=message) as err:
        load_dataset(cfg, cfg.train_csv)
    assert "train_001" in str(err.value)


def test_each_slide_uses_its_own_patch_size_level0(tmp_path):
    cfg = _cohort(tmp_path)
    # a 20x-native slide: patches of 512 level-0 px, among 40x slides of 1024
    _write_slide(cfg, "train_005", 26, psize=512, labels=np.zeros(26, int))
    data = load_dataset(cfg, cfg.train_csv)
    for name in ("train_000", "train_005"):
        bag = data[data.get_bag_names().index(name)]
        n = len(bag["X"])
        assert torch.equal(bag["coords"], torch.from_numpy(_coords(n, 1) // 1))
        # neighbours on the grid are linked in adj
        assert bag["adj"]._nnz() > n


def test_features_of_different_widths_are_an_error(tmp_path):
    cfg = _cohort(tmp_path)
    _write_slide(cfg, "train_006", 29, dim=DIM + 8, labels=np.zeros(29, int))
    with pytest.raises(ValueError, match="different dimensions"):
        load_dataset(cfg, cfg.train_csv)


def test_missing_coords_file_is_an_error_naming_the_folder(tmp_path):
    cfg = _cohort(tmp_path)
    cfg.coords_path("train_004").unlink()
    with pytest.raises(FileNotFoundError, match="no coords") as err:
        load_dataset(cfg, cfg.train_csv)
    assert "train_004" in str(err.value)


# ----------------------------------------------------------------------------- CSVs, splits


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wsi_name,wsi_label\n", "no rows"),
        ("", "empty"),
        ("wsi_name,label\na,1\n", "missing"),
        ("wsi_name,wsi_label\na,1\nb,\n", "must be 0"),
        ("wsi_name,wsi_label\na,1\nb,2\n", "line 3: b,2"),
        ("wsi_name,wsi_label\na,1\nb,tumour\n", "must be 0"),
        ("wsi_name,wsi_label\na,1\n,0\n", "wsi_name is blank"),
        ("wsi_name,wsi_label\na,1\na,0\n", "more than once"),
    ],
)
def test_bad_labels_csv_is_a_value_error_naming_the_file(tmp_path, text, message):
    csv = tmp_path / "labels.csv"
    csv.write_text(text)
    with pytest.raises(ValueError, match=message) as err:
        read_split(csv)
    assert str(csv) in str(err.value)


def test_good_labels_csv_gives_int_labels(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("wsi_name,wsi_label\na,1\nb,0.0\n")
    table = read_split(csv)
    assert table["wsi_label"].tolist() == [1, 0] and table["wsi_label"].dtype.kind == "i"


def test_a_training_csv_with_one_class_is_an_error_naming_it(tmp_path):
    cfg = _cohort(tmp_path)
    table = pd.read_csv(cfg.train_csv)
    table["wsi_label"] = 0
    table.to_csv(cfg.train_csv, index=False)
    with pytest.raises(ValueError, match="0 tumour") as err:
        load_splits(cfg)
    assert str(cfg.train_csv) in str(err.value)


def test_a_validation_split_without_both_classes_is_an_error(tmp_path):
    cfg = _cohort(tmp_path)
    with pytest.raises(ValueError, match="raise val_frac"):
        load_splits(cfg, val_frac=0.1)


# ----------------------------------------------------------------------------- one-class AUROC


def _preds(y, y_inst, scores) -> Predictions:
    n = len(y)
    return Predictions(
        names=[f"s{i}" for i in range(n)],
        y=np.asarray(y),
        prob=np.full(n, 0.5),
        inst_scores=[np.asarray(s, float) for s in scores],
        attention=[np.asarray(s, float) for s in scores],
        y_inst=[np.asarray(v) for v in y_inst],
        grid_xy=[np.stack([np.arange(len(s)), np.zeros(len(s), int)], 1) for s in scores],
    )


def test_slide_patch_auroc_is_nan_on_one_class_and_exact_otherwise():
    assert np.isnan(slide_patch_auroc([0.1, 0.9, 0.3], [0, 0, 0]))
    assert np.isnan(slide_patch_auroc([0.1, 0.9], [1, 1]))
    assert slide_patch_auroc([0.1, 0.9, 0.3, 0.5], [0, 1, 0, 1]) == 1.0
    assert slide_patch_auroc([0.1, 0.2, 0.3, 0.4], [1, 0, 1, 0]) == 0.25


def test_patch_auroc_with_a_tumour_slide_without_positive_patches():
    # slide 1 is tumour but has no tumour patch: its patches count as negatives
    preds = _preds([1, 1, 0], [[0, 1, 1], [0, 0], [0, 0]], [[0, 1, 0.8], [0.5, 0.2], [1, 0]])
    value = patch_auroc(preds)
    # pooled (min-max per slide): positives 1.0, 0.8; negatives 0.0, 1.0, 0.0
    assert value == pytest.approx(4.5 / 6)
    only_empty = _preds([1, 0], [[0, 0], [0, 0]], [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="no tumour patch"):
        patch_auroc(only_empty)
    with pytest.raises(ValueError, match="at least one tumour bag"):
        patch_auroc(_preds([0], [[0, 1]], [[0, 1]]))


def test_froc_counts_no_lesion_for_a_tumour_slide_without_positive_patches():
    preds = _preds([1, 1], [[0, 1, 0], [0, 0, 0]], [[0, 1, 0], [0, 1, 0]])
    result = froc_from_predictions(preds)
    assert result.n_lesions == 1 and result.n_slides == 2
    assert 0 <= result.score <= 1
