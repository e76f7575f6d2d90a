"""Bags from TRIDENT folders with torchmil: datasets, the split, and data loaders."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from tensordict import TensorDict
from torchmil.data import collate_fn
from torchmil.datasets import TridentWSIDataset

from helpers.settings import Settings
from helpers.trident import read_coords

BAG_KEYS = ["X", "Y", "y_inst", "adj", "coords"]


def patch_size_level0(cfg: Settings, name: str | None = None) -> int:
    """``patch_size_level0`` from a coords file's attributes (1024: 40x slides, 20x / 512 px)."""
    if name is None:
        files = sorted(cfg.coords_dir.glob("*_patches.h5"))
        if not files:
            raise FileNotFoundError(f"No *_patches.h5 in {cfg.coords_dir}")
        path = files[0]
    else:
        path = cfg.coords_path(name)
    _, attrs = read_coords(path)
    return int(attrs["patch_size_level0"])


def read_split(csv_path) -> pd.DataFrame:
    """A labels CSV (``wsi_name,wsi_label``), checked."""
    table = pd.read_csv(csv_path)
    missing = {"wsi_name", "wsi_label"} - set(table.columns)
    if missing:
        raise ValueError(f"{csv_path} lacks the column(s) {sorted(missing)}")
    return table


def load_dataset(cfg: Settings, csv_path, names: list[str] | None = None) -> TridentWSIDataset:
    """A ``TridentWSIDataset`` of the slides in ``csv_path`` (or ``names``), fully loaded.

    Every bag holds ``X`` ``(bag_size, dim)`` float32, ``Y`` ``(1,)``, ``y_inst``
    ``(bag_size,)``, ``adj`` (sparse ``(bag_size, bag_size)``) and ``coords``
    ``(bag_size, 2)`` in grid units (level-0 coords divided by ``patch_size_level0``).
    """
    table = read_split(csv_path)
    names = list(table["wsi_name"]) if names is None else list(names)
    missing = [n for n in names if not cfg.features_path(n).exists()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} slide(s) of {csv_path} have no features in {cfg.features_dir}: "
            f"{missing[:5]}"
        )
    with warnings.catch_warnings():  # torch's note on sparse checks, once per bag
        warnings.filterwarnings("ignore", message="Sparse invariant checks")
        dataset = TridentWSIDataset(
            base_path=cfg.base_path,
            labels_path=str(csv_path),
            feature_extractor=cfg.encoder,
            patch_labels_path=str(cfg.patch_labels_dir) + "/",
            wsi_names=names,
            bag_keys=BAG_KEYS,
            patch_size=patch_size_level0(cfg, names[0]),
            load_at_init=True,
            wsi_name_col="wsi_name",
            wsi_label_col="wsi_label",
        )
    # torchmil builds ``adj`` in float64; the models compute in float32
    for bag in dataset.loaded_bags.values():
        bag["adj"] = bag["adj"].float()
    return dataset


def load_splits(
    cfg: Settings, val_frac: float = 0.2, seed: int = 0
) -> tuple[TridentWSIDataset, TridentWSIDataset, TridentWSIDataset]:
    """Train / validation (stratified split of ``train.csv``) and test (``test.csv``) datasets."""
    train_full = load_dataset(cfg, cfg.train_csv)
    labels = np.concatenate([np.ravel(y) for y in train_full.get_bag_labels()]).astype(int)
    idx_train, idx_val = train_test_split(
        np.arange(len(labels)), test_size=val_frac, random_state=seed, stratify=labels
    )
    train = train_full.subset(sorted(idx_train.tolist()))
    val = train_full.subset(sorted(idx_val.tolist()))
    test = load_dataset(cfg, cfg.test_csv)
    return train, val, test


def collate(bags: list[TensorDict]) -> TensorDict:
    """torchmil's ``collate_fn`` (pads bags, adds ``mask``), with ``Y`` as ``(batch_size,)``.

    ``TridentWSIDataset`` gives each bag a label of shape ``(1,)``, so plain ``collate_fn``
    returns ``Y`` of shape ``(batch_size, 1)`` while torchmil's models return logits of shape
    ``(batch_size,)``; flattening it here keeps losses and metrics aligned.
    """
    batch = collate_fn(bags)
    batch["Y"] = batch["Y"].reshape(-1)
    return batch


def make_loader(
    dataset, batch_size: int = 1, shuffle: bool = False, seed: int = 0
) -> torch.utils.data.DataLoader:
    """A ``DataLoader`` with :func:`collate`; shuffling is seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, collate_fn=collate, generator=generator
    )


def bag_table(dataset) -> pd.DataFrame:
    """One row per bag: name, label, n_patches, n_tumor_patches and tumor_fraction."""
    rows = []
    for i, name in enumerate(dataset.get_bag_names()):
        bag = dataset[i]
        y_inst = bag["y_inst"] if "y_inst" in bag.keys() else torch.zeros(len(bag["X"]))
        rows.append(
            {
                "name": name,
                "label": int(bag["Y"].reshape(-1)[0]),
                "n_patches": int(bag["X"].shape[0]),
                "n_tumor_patches": int((y_inst > 0).sum()),
            }
        )
    table = pd.DataFrame(rows)
    table["tumor_fraction"] = table["n_tumor_patches"] / table["n_patches"]
    return table
