"""Bags from TRIDENT folders with torchmil: datasets, the split, and data loaders."""

from __future__ import annotations

import os
import shlex
import warnings
from typing import cast

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split
from tensordict import TensorDict
from torchmil.data import collate_fn
from torchmil.datasets import TridentWSIDataset

from helpers.formats import (
    check_patch_grid,
    coords_patch_size,
    read_coords,
    read_features,
    read_labels_csv,
    read_patch_labels,
    read_tumor_fraction,
)
from helpers.grid import grid_xy
from helpers.layout import WSI_EXTENSIONS
from helpers.progress import progress_bar
from helpers.settings import Settings

#: The start of torch's warning that it does not check sparse tensors (torchmil's ``adj``).
SPARSE_WARNING = "Sparse invariant checks"

BAG_KEYS = ["X", "Y", "y_inst", "adj", "coords"]
BAG_KEYS_NO_PATCH_LABELS = ["X", "Y", "adj", "coords"]


def ignore_sparse_warnings() -> None:
    """Hide torch's note that it does not validate sparse tensors (torchmil's ``adj`` is one).

    Call it once at the top of a notebook, or inside ``warnings.catch_warnings()`` to hide the
    note for a block only; other warnings still show.
    """
    warnings.filterwarnings("ignore", message=SPARSE_WARNING)


def patch_size_level0(cfg: Settings, name: str | None = None) -> int:
    """``patch_size_level0`` from a coords file's attributes (1024: 40x slides, 20x / 512 px)."""
    if name is None:
        files = sorted(cfg.coords_dir.glob("*_patches.h5"))
        if not files:
            raise FileNotFoundError(f"No *_patches.h5 in {cfg.coords_dir}")
        path = files[0]
    else:
        path = cfg.coords_path(name)
    attrs, _ = read_coords(path)
    return coords_patch_size(attrs, path)


def level0_mpp(cfg: Settings, name: str, coords_attrs: dict) -> float | None:
    """Level-0 microns per pixel of slide ``name``: read from the slide file when it is on
    disk (``helpers.slide.slide_mpp``), else nominal ``10 / level0_magnification`` from
    the coords attributes (the demo's slides, 20x at 0.5 um/px, are not opened: some are
    painted on demand only); ``None`` when neither is known."""
    if not cfg.is_demo:
        for ext in WSI_EXTENSIONS:
            path = cfg.wsi_dir / f"{name}{ext}"
            if path.is_file():
                try:
                    import openslide

                    from helpers.slide import slide_mpp

                    with openslide.OpenSlide(str(path)) as slide:
                        return slide_mpp(slide)
                except Exception:  # unreadable file or no mpp: fall back to the nominal value
                    break
    magnification = coords_attrs.get("level0_magnification")
    if magnification is None:
        return None
    try:
        magnification = float(magnification)
    except (TypeError, ValueError):
        return None
    return 10.0 / magnification if magnification > 0 else None


def patch_um(cfg: Settings, name: str) -> float | None:
    """A patch's side in microns (``patch_size_level0`` x :func:`level0_mpp`), or ``None``."""
    attrs, _ = read_coords(cfg.coords_path(name))
    mpp = level0_mpp(cfg, name, attrs)
    if mpp is None or "patch_size_level0" not in attrs:
        return None
    return float(attrs["patch_size_level0"]) * mpp


def read_split(csv_path) -> pd.DataFrame:
    """A labels CSV (``wsi_name,wsi_label``), checked by ``helpers.formats.read_labels_csv``:
    a ``ValueError`` naming the file (and the lines at fault) for an empty file, no rows,
    missing columns, blank names or labels, labels other than 0/1, repeated names.

    The names come back as ``str`` (stripped, without a slide extension such as ``.tif``),
    the labels as ``int``. This reading is the only one: the datasets take their labels from
    it, not from torchmil's own reading of the file.
    """
    return read_labels_csv(csv_path)


def has_patch_labels(cfg: Settings, names: list[str] | None = None) -> bool:
    """Whether ``cfg.patch_labels_dir`` holds a ``<name>.h5`` for every slide of ``names``
    (every slide of both CSVs when ``None``). Patch labels are optional: they are made from
    the tumour masks or XML annotations with ``python -m helpers.labels`` (Chapter 1)."""
    if not cfg.patch_labels_dir.is_dir():
        return False
    if names is None:
        names = [*read_split(cfg.train_csv)["wsi_name"], *read_split(cfg.test_csv)["wsi_name"]]
    return all(cfg.patch_labels_path(n).is_file() for n in names)


def labels_commands(cfg: Settings) -> list[str]:
    """The ``python -m helpers.labels`` commands that make the patch labels of ``cfg``'s
    data, one per labels CSV, with the reader's folders filled in and quoted for a POSIX
    shell (a path with spaces pastes as one argument); continued over lines with ``\\``.

    Each slide's patch size is the one its coords file records (no ``--patch_size``);
    ``--wsi_dir`` lets the masks' size be checked against the slides. Without a mask or
    annotations folder in ``cfg`` the command carries the placeholders ``MASKS`` and
    ``XMLS`` to replace.
    """
    sources = [
        ("--" + flag, str(folder) if folder is not None else placeholder)
        for flag, folder, placeholder in (
            ("masks_dir", cfg.mask_dir, "MASKS"),
            ("annotations_dir", cfg.annotations_dir, "XMLS"),
        )
        if folder is not None or (cfg.mask_dir is None and cfg.annotations_dir is None)
    ]
    commands = []
    for csv in (cfg.train_csv, cfg.test_csv):
        pairs = [
            ("--csv_path", str(csv)),
            ("--coords_dir", str(cfg.coords_dir)),
            ("--save_dir", str(cfg.patch_labels_dir)),
            *sources,
            ("--wsi_dir", str(cfg.wsi_dir)),
        ]
        commands.append(
            " \\\n    ".join(
                ["python -m helpers.labels"]
                + [f"{flag} {shlex.quote(value)}" for flag, value in pairs]
            )
        )
    return commands


def _full_hint(cfg: Settings) -> str:
    commands = "\n".join(labels_commands(cfg))
    return (
        f"No patch labels in {cfg.patch_labels_dir}: this part needs them. Make them from "
        f"the tumour masks or XML annotations (README step 3, Chapter 1):\n{commands}"
    )


#: The settings (one per chapter: each calls ``setup()``) whose full hint was shown.
_HINTED: list[Settings] = []


def patch_labels_hint(cfg: Settings) -> str:
    """A message for cells that need patch labels: none were found, and how to make them
    (the commands of :func:`labels_commands`).

    Once per chapter: the first call with a ``cfg`` (each chapter's ``setup()`` makes one)
    gives the whole note; later calls with the same ``cfg`` a one-line reminder.
    """
    if _HINTED and _HINTED[0] is cfg:
        return f"(Skipped: no patch labels in {cfg.patch_labels_dir}; see the note above.)"
    _HINTED[:] = [cfg]
    return _full_hint(cfg)


class CheckedTridentDataset(TridentWSIDataset):
    """``TridentWSIDataset`` that checks every bag as it loads, with errors naming the file.

    - features are cast to float32 (TRIDENT stores float16 or bfloat16 for some encoders),
      must be 2-D and finite, and have one row per row of the coords file; when the features
      file carries its own copy of ``coords``, it must equal the coords file's;
    - coords are divided by each slide's own ``patch_size_level0`` (a 20x-native slide has
      512, a 40x slide 1024), not by one number for the whole folder;
    - patch labels (when loaded) have one value per patch, each 0 or 1;
    - the patches of a coords file each have their own grid cell (no ``--overlap``);
    - the bag labels are those of ``slide_labels``, the book's one reading of the labels
      CSV (:func:`read_split`), not torchmil's own reading of the file (which turns a name
      of digits into a number, cuts a name at its last dot and needs the header exactly).
    """

    #: Each slide's patch side in microns, ``None`` when unknown (set by :func:`load_dataset`).
    patch_um: dict[str, float | None]
    #: Each slide's patch tumour fractions ``(N,)``, when its patch-label file holds them.
    tumor_fractions: dict[str, np.ndarray]

    def __init__(self, *args, slide_labels: dict[str, int], **kwargs) -> None:
        self.slide_labels = dict(slide_labels)  # read by _load_labels during __init__
        super().__init__(*args, **kwargs)

    def _load_features(self, name: str) -> np.ndarray:
        path = os.path.join(self.features_path, name + self.file_ext)
        features, self._feature_coords_level0 = read_features(path)
        if features.ndim != 2 or len(features) == 0:
            raise ValueError(f"{path}: features must be (n_patches, dim), got {features.shape}")
        features = features.astype(np.float32)
        if not np.isfinite(features).all():
            bad = np.flatnonzero(~np.isfinite(features).all(axis=1))
            raise ValueError(
                f"{path}: {len(bad)} patch(es) have NaN or infinite features "
                f"(rows {bad[:5].tolist()}...); re-run the feature extraction for this slide."
            )
        return features

    def _load_coords(self, name: str) -> np.ndarray:
        path = os.path.join(self.coords_path, name + "_patches" + self.file_ext)
        attrs, coords_level0 = read_coords(path)  # FileNotFoundError naming the file
        size = coords_patch_size(attrs, path)
        check_patch_grid(coords_level0, size, attrs, path)
        self._coords_level0 = coords_level0
        # torchmil's bag key "coords" holds grid cells
        return grid_xy(coords_level0, size)

    def _load_inst_labels(self, name: str) -> np.ndarray:
        path = os.path.join(self.inst_labels_path, name + self.file_ext)
        labels = read_patch_labels(path)
        # the tumour fractions beside the labels (for the FROC's lesions), kept out of the bag
        fractions = read_tumor_fraction(path)
        if fractions is not None:
            if len(fractions) != len(labels):
                raise ValueError(
                    f"{path} has {len(labels)} patch labels but {len(fractions)} tumor fractions."
                )
            self.__dict__.setdefault("tumor_fractions", {})[name] = fractions
        return labels

    def _load_labels(self, name: str) -> np.ndarray:
        if name not in self.slide_labels:
            raise ValueError(f"{self.labels_path}: slide {name!r} is not listed.")
        return np.array([self.slide_labels[name]], dtype=np.int64)

    def _load_bag(self, name: str) -> dict:
        bag = super()._load_bag(name)
        n = len(bag["X"])
        coords_file = os.path.join(self.coords_path, name + "_patches" + self.file_ext)
        features_file = os.path.join(self.features_path, name + self.file_ext)
        if len(bag["coords"]) != n:
            raise ValueError(
                f"{features_file} has {n} feature rows but {coords_file} has "
                f"{len(bag['coords'])} coords: they must match row by row (re-run TRIDENT's "
                "feature extraction for this slide)."
            )
        feature_coords_level0 = self._feature_coords_level0
        if feature_coords_level0 is not None and not np.array_equal(
            feature_coords_level0, self._coords_level0
        ):
            raise ValueError(
                f"the 'coords' stored in {features_file} differ from {coords_file}: the "
                "features were extracted from another patching of this slide."
            )
        if "y_inst" in bag and len(bag["y_inst"]) != n:
            raise ValueError(
                f"{os.path.join(self.inst_labels_path, name + self.file_ext)} has "
                f"{len(bag['y_inst'])} patch labels but the slide has {n} patches: make the "
                "labels again from these coords (python -m helpers.labels)."
            )
        return bag


def _checked_names(
    cfg: Settings, table: pd.DataFrame, csv_path, names: list[str] | None, patch_labels: bool | None
) -> tuple[list[str], bool]:
    """The slides to load and whether with patch labels, after checking that every file is
    there (see :func:`load_dataset`); a clear error otherwise."""
    names = list(table["wsi_name"]) if names is None else list(names)
    unknown = sorted(set(names) - set(table["wsi_name"]))
    if unknown:
        raise ValueError(f"slide(s) not listed in {csv_path}: {unknown[:5]}")
    missing = [n for n in names if not cfg.features_path(n).exists()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} slide(s) of {csv_path} have no features in {cfg.features_dir}: "
            f"{missing[:5]}"
        )
    missing = [n for n in names if not cfg.coords_path(n).exists()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} slide(s) of {csv_path} have no coords in {cfg.coords_dir}: "
            f"{missing[:5]}"
        )
    if patch_labels is None:
        patch_labels = has_patch_labels(cfg, names)
        if not patch_labels and cfg.patch_labels_dir.is_dir():
            absent = [n for n in names if not cfg.patch_labels_path(n).is_file()]
            if len(absent) < len(names):  # some slides have labels, others not: say so
                raise FileNotFoundError(
                    f"{len(absent)} slide(s) of {csv_path} have no patch labels in "
                    f"{cfg.patch_labels_dir}: {absent[:5]}. Label every slide (python -m "
                    "helpers.labels) or remove the folder to run without patch labels."
                )
    elif patch_labels and not has_patch_labels(cfg, names):
        raise FileNotFoundError(_full_hint(cfg))
    return names, bool(patch_labels)


def load_dataset(
    cfg: Settings,
    csv_path,
    names: list[str] | None = None,
    patch_labels: bool | None = None,
) -> TridentWSIDataset:
    """A ``TridentWSIDataset`` of the slides in ``csv_path`` (or ``names``), fully loaded.

    Every bag holds ``X`` ``(bag_size, dim)`` float32, ``Y`` ``(1,)``, ``adj`` (sparse
    ``(bag_size, bag_size)``), ``coords`` ``(bag_size, 2)`` in grid units (level-0 coords
    divided by the slide's ``patch_size_level0``) and, when there are patch labels,
    ``y_inst`` ``(bag_size,)``. Beside the bags, ``dataset.patch_um`` maps each slide to its
    patch side in microns (:func:`patch_um`, ``None`` when unknown) and
    ``dataset.tumor_fractions`` to its patch tumour fractions (when the patch-label files
    hold them). ``patch_labels=None`` uses them when every slide has a file in
    ``cfg.patch_labels_dir`` (see :func:`has_patch_labels`); ``True`` requires them.
    Every bag is checked on load (see :class:`CheckedTridentDataset`).
    """
    table = read_split(csv_path)
    names, patch_labels = _checked_names(cfg, table, csv_path, names, patch_labels)
    with warnings.catch_warnings():  # torch's note on sparse checks, once per bag
        ignore_sparse_warnings()
        dataset = CheckedTridentDataset(
            base_path=cfg.base_path,
            labels_path=str(csv_path),
            feature_extractor=cfg.encoder,
            patch_labels_path=str(cfg.patch_labels_dir) + "/" if patch_labels else None,
            wsi_names=names,
            bag_keys=BAG_KEYS if patch_labels else BAG_KEYS_NO_PATCH_LABELS,
            patch_size=patch_size_level0(cfg, names[0]),
            load_at_init=False,  # loaded below, with a bar that is no red block in Jupyter
            wsi_name_col="wsi_name",
            wsi_label_col="wsi_label",
            slide_labels=dict(zip(table["wsi_name"], table["wsi_label"], strict=True)),
        )
        bags = progress_bar(dataset.bag_names, desc="Loading bags", unit="bag", leave=False)
        for name in bags:
            dataset.loaded_bags[name] = dataset._build_bag(name)
    dims = {name: int(bag["X"].shape[1]) for name, bag in dataset.loaded_bags.items()}
    if len(set(dims.values())) > 1:
        raise ValueError(
            f"the features in {cfg.features_dir} have different dimensions "
            f"{sorted(set(dims.values()))} (e.g. {dict(list(dims.items())[:3])}): "
            "one encoder per folder."
        )
    # torchmil builds ``adj`` in float64; the models compute in float32
    for bag in dataset.loaded_bags.values():
        bag["adj"] = bag["adj"].float()
    # for the FROC (helpers.evaluation.predict): each slide's patch side in microns, and
    # its tumour fractions when the patch labels hold them
    dataset.patch_um = {name: patch_um(cfg, name) for name in names}
    if not patch_labels:
        dataset.tumor_fractions = {}
    return dataset


def load_splits(
    cfg: Settings, val_frac: float = 0.2, seed: int = 0
) -> tuple[TridentWSIDataset, TridentWSIDataset, TridentWSIDataset]:
    """Train / validation (stratified split of ``train.csv``) and test (``test.csv``) datasets.

    The training CSV needs at least two slides of each class (one for training, one for
    validation); the validation split must get both classes (else a ``ValueError`` says to
    raise ``val_frac``). Patch labels are loaded for both CSVs or for neither. A slide listed
    in both CSVs is refused (every test metric would be inflated).
    """
    both = sorted(
        set(read_split(cfg.train_csv)["wsi_name"]) & set(read_split(cfg.test_csv)["wsi_name"])
    )
    if both:
        raise ValueError(
            f"{len(both)} slide(s) are listed in both {cfg.train_csv} and {cfg.test_csv}: "
            f"{both[:5]}{' ...' if len(both) > 5 else ''}. A model must not be tested on "
            "slides it was trained on (every test metric would be inflated): remove them from "
            "one of the two CSVs."
        )
    train_full = load_dataset(cfg, cfg.train_csv)
    labels = np.concatenate([np.ravel(y) for y in train_full.get_bag_labels()]).astype(int)
    counts = {c: int((labels == c).sum()) for c in (0, 1)}
    if min(counts.values()) < 2:
        raise ValueError(
            f"{cfg.train_csv} has {counts[0]} normal and {counts[1]} tumour slide(s): training "
            "and validation need at least two slides of each class."
        )
    try:
        idx_train, idx_val = cast(  # one array of indices each
            "list[np.ndarray]",
            train_test_split(
                np.arange(len(labels)), test_size=val_frac, random_state=seed, stratify=labels
            ),
        )
    except ValueError as exc:  # e.g. fewer validation slides than classes
        raise ValueError(
            f"cannot split {cfg.train_csv} with val_frac={val_frac}: {exc} (raise val_frac)."
        ) from exc
    if len(np.unique(labels[idx_val])) < 2:
        raise ValueError(
            f"val_frac={val_frac} leaves {len(idx_val)} validation slide(s) of {cfg.train_csv}, "
            "not enough for both classes: raise val_frac."
        )
    # subset() deep-copies the dataset (torchmil types the copy as its base class)
    train = cast(TridentWSIDataset, train_full.subset(sorted(idx_train.tolist())))
    val = cast(TridentWSIDataset, train_full.subset(sorted(idx_val.tolist())))
    test = load_dataset(cfg, cfg.test_csv)
    if ("y_inst" in train_full.bag_keys) != ("y_inst" in test.bag_keys):
        with_labels = cfg.train_csv if "y_inst" in train_full.bag_keys else cfg.test_csv
        raise FileNotFoundError(
            f"{cfg.patch_labels_dir} has patch labels for the slides of {with_labels} only: "
            "label both CSVs (python -m helpers.labels) or neither."
        )
    return train, val, test


def collate(bags: list[TensorDict]) -> TensorDict:
    """torchmil's ``collate_fn`` (pads bags, adds ``mask``), with ``Y`` as ``(batch_size,)``.

    ``TridentWSIDataset`` gives each bag a label of shape ``(1,)``, so plain ``collate_fn``
    returns ``Y`` of shape ``(batch_size, 1)`` while torchmil's models return logits of shape
    ``(batch_size,)``; flattening it here keeps losses and metrics aligned.
    """
    # torchmil types the bags as dicts; its datasets give (and collate_fn reads) TensorDicts
    batch = collate_fn(bags)  # pyright: ignore[reportArgumentType]
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
    """One row per bag: name, label, n_patches and, when the bags have patch labels
    (``y_inst``), n_tumor_patches and tumor_fraction (without them those two columns are
    missing values, never zeros)."""
    rows = []
    for i, name in enumerate(dataset.get_bag_names()):
        bag = dataset[i]
        has_labels = "y_inst" in bag.keys()
        rows.append(
            {
                "name": name,
                "label": int(bag["Y"].reshape(-1)[0]),
                "n_patches": int(bag["X"].shape[0]),
                "n_tumor_patches": int((bag["y_inst"] > 0).sum()) if has_labels else pd.NA,
            }
        )
    table = pd.DataFrame(rows)
    table["n_tumor_patches"] = table["n_tumor_patches"].astype("Int64")
    table["tumor_fraction"] = (table["n_tumor_patches"] / table["n_patches"]).astype("Float64")
    return table
