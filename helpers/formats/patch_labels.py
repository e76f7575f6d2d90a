"""This book's patch-labels file, ``patch_labels/<name>.h5``: ``patch_labels`` ``(N,)`` int64
0/1 and ``tumor_fraction`` ``(N,)`` float32, one row per row of the coords file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from helpers.fileio import atomic_path, write_bytes
from helpers.formats.h5 import LabelInputError, h5_array, h5_bytes, read_dataset

#: The datasets of a patch-labels file of this book (``helpers.labels`` writes them).
PATCH_LABEL_KEYS = frozenset({"patch_labels", "tumor_fraction"})


def read_patch_labels(path) -> np.ndarray:
    """The ``patch_labels`` of ``patch_labels/<name>.h5``: ``(N,)`` int64, one per coords row."""
    labels, _ = read_dataset(Path(path), "patch_labels", "patch labels file")
    labels = labels.reshape(-1)
    if not np.isin(labels, (0, 1)).all():  # checked before the cast: 0.7 must not become 0
        raise LabelInputError(
            f"{path}: patch labels must be 0 or 1, found {np.unique(labels)[:10]}"
        )
    return labels.astype(np.int64)


def read_tumor_fraction(path) -> np.ndarray | None:
    """The ``tumor_fraction`` of ``patch_labels/<name>.h5`` ``(N,)`` float64 in [0, 1], or
    ``None`` when the file has none (labels made by other tools)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "tumor_fraction" not in f:
                return None
            fractions = np.asarray(h5_array(f, "tumor_fraction"), dtype=np.float64).reshape(-1)
    except OSError as exc:
        raise LabelInputError(f"cannot read patch labels file {path}: {exc}") from exc
    if not (np.isfinite(fractions) & (fractions >= 0) & (fractions <= 1)).all():
        raise LabelInputError(f"{path}: tumor_fraction must hold fractions in [0, 1].")
    return fractions


def write_patch_labels(
    path, labels: np.ndarray, fractions: np.ndarray | None = None, attrs: dict | None = None
) -> None:
    """Write ``patch_labels`` (int64, ``(N,)``) to an h5 file atomically (tmp file + rename).

    Arguments:
        path: Output file, ``<save_dir>/<name>.h5``; its folder is created.
        labels: ``(N,)`` 0/1 labels, one per row of the coords file, same order.
        fractions: Optional ``(N,)`` tumor fractions, stored as ``tumor_fraction`` (float32).
        attrs: Optional attributes stored on ``patch_labels`` (e.g. threshold, source).
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {labels.shape}.")
    if fractions is not None and np.shape(fractions) != labels.shape:
        raise ValueError(f"fractions {np.shape(fractions)} and labels {labels.shape} differ.")
    with atomic_path(path) as tmp:
        write_patch_labels_h5(tmp, labels, fractions, attrs)


def write_patch_labels_h5(path, labels, fractions=None, attrs: dict | None = None) -> None:
    """Write a patch-labels h5 file straight to ``path`` (not atomic: see
    :func:`write_patch_labels`); the caller checks shapes. A failed write (a full disk)
    raises ``OSError`` and leaves no file at ``path``."""

    def fill(f: h5py.File) -> None:
        dataset = f.create_dataset("patch_labels", data=np.asarray(labels).astype(np.int64))
        for k, v in (attrs or {}).items():
            dataset.attrs[k] = v
        if fractions is not None:
            f.create_dataset("tumor_fraction", data=np.asarray(fractions, dtype=np.float32))

    write_bytes(path, h5_bytes(fill), what=f"patch labels {Path(path).name}")


def patch_labels_nbytes(n_patches: int) -> int:
    """About the size of a patch-labels file of ``n_patches`` (labels, fractions and h5
    bookkeeping), for a free-space check before writing."""
    return 12 * int(n_patches) + 8192


def is_patch_labels_file(path) -> bool:
    """Whether ``path`` is an h5 file holding this book's patch labels and nothing else
    (``patch_labels``, and ``tumor_fraction`` when present): the only kind of existing file
    ``helpers.labels`` may replace."""
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except OSError:
        return False
    return "patch_labels" in keys and keys <= PATCH_LABEL_KEYS
