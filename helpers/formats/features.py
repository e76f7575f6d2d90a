"""TRIDENT's features file, ``features_<encoder>/<name>.h5``: ``features`` ``(N, dim)`` and
``coords`` ``(N, 2)``, as TRIDENT v0.3 writes them."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from helpers.formats.h5 import REDO_FEATURES, LabelInputError, h5_array, save_h5


def read_features(path) -> tuple[np.ndarray, np.ndarray | None]:
    """``features`` ``(N, dim)`` of a TRIDENT features file and its ``coords`` ``(N, 2)``
    (``None`` when the file has none), as stored; errors name the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "features" not in f:
                raise LabelInputError(
                    f"{path} has no dataset 'features' (keys: {list(f.keys())}): {REDO_FEATURES}."
                )
            features = h5_array(f, "features")
            coords_level0 = h5_array(f, "coords") if "coords" in f else None
    except OSError as exc:
        raise LabelInputError(
            f"cannot read features file {path}: {exc}. The file is empty, truncated or not an "
            f"h5 file: {REDO_FEATURES}."
        ) from exc
    return features, coords_level0


def save_features(
    path: str | os.PathLike,
    features: np.ndarray,
    coords_level0: np.ndarray,
    coords_attrs: dict,
    encoder_name: str,
) -> None:
    """Write ``features_<encoder>/<slide>.h5``: ``features`` ``(n_patches, dim)`` and ``coords``."""
    if len(features) != len(coords_level0):
        raise ValueError(f"{len(features)} feature rows but {len(coords_level0)} coords")
    path = Path(path)
    save_h5(
        path,
        {"features": np.asarray(features), "coords": np.asarray(coords_level0, dtype=np.int64)},
        {
            # as TRIDENT: on the features dataset, not on the file
            "features": {
                "name": coords_attrs["name"],
                "savetodir": str(path.parent),
                "encoder": encoder_name,
            },
            "coords": coords_attrs,
        },
    )
