"""What every h5 file of the book shares: the error for bad input, reading one dataset (and
typed accessors for an open file), and writing a file made in memory (free space checked
first; a full disk is a clear ``OSError``, never half a file or an h5py crash)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import h5py
import numpy as np

from helpers.fileio import atomic_path, write_bytes

#: Problems listed in an error message before "... and N more".
MAX_SHOWN = 5
#: What to do about a damaged TRIDENT file.
REDO_COORDS = "run TRIDENT's patching (--task coords) again for this slide"
REDO_FEATURES = "extract this slide's features again (TRIDENT --task feat)"


class LabelInputError(ValueError):
    """Bad input: a missing file, a mismatch, an unreadable file."""


def h5_dataset(group: h5py.Group, key: str) -> h5py.Dataset:
    """Dataset ``key`` of an open h5 file or group, as h5py returns it.

    Arguments:
        group: An open ``h5py.File`` or ``h5py.Group``.
        key: The dataset's name in it.

    Returns:
        ``group[key]``, typed as the dataset it is in every file of the book (h5py's inferred
        types make it a group, a dataset or a named datatype).
    """
    return cast(h5py.Dataset, group[key])


def h5_array(group: h5py.Group, key: str) -> np.ndarray:
    """Dataset ``key`` of an open h5 file or group, read whole.

    Arguments:
        group: An open ``h5py.File`` or ``h5py.Group``.
        key: The dataset's name in it.

    Returns:
        ``group[key][:]``, the array as stored (dtype and shape of the dataset).
    """
    return h5_dataset(group, key)[:]


def h5_attrs(group: h5py.Group, key: str) -> Mapping[str, Any]:
    """The attributes of dataset ``key`` of an open h5 file or group, read as h5py reads them.

    Arguments:
        group: An open ``h5py.File`` or ``h5py.Group``.
        key: The dataset's name in it.

    Returns:
        ``group[key].attrs`` (h5py's inferred types make each value an ``Empty`` or an array,
        where the book stores numbers and strings).
    """
    return cast("Mapping[str, Any]", group[key].attrs)


def read_dataset(path: Path, key: str, what: str) -> tuple[np.ndarray, dict]:
    """Dataset ``key`` of an h5 file and its attributes (numpy scalars as Python values);
    ``FileNotFoundError`` or :class:`LabelInputError` naming ``what`` and the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise LabelInputError(f"{path} has no dataset '{key}' (keys: {list(f.keys())}).")
            data = h5_array(f, key)
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f[key].attrs.items()}
    except OSError as exc:
        raise LabelInputError(
            f"cannot read {what} {path}: {exc} (an empty, truncated or non-h5 file)"
        ) from exc
    return data, attrs


_MEMORY_FILES = itertools.count()


def h5_bytes(fill: Callable[[h5py.File], None]) -> bytes:
    """The bytes of an h5 file made in memory by ``fill(file)``: the same bytes h5py writes
    to disk, without touching the disk (h5py crashes, not raises, when a disk fills up)."""
    name = f"mil-book-{os.getpid()}-{next(_MEMORY_FILES)}.h5"
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        fill(f)
        f.flush()
        return f.id.get_file_image()


def save_h5(path: str | os.PathLike, assets: dict, attributes: dict) -> None:
    """Write datasets as TRIDENT does (one chunk per row, resizable first axis), each with
    its own attributes and none on the file; atomically."""

    def fill(f: h5py.File) -> None:
        for key, data in assets.items():
            dataset = f.create_dataset(
                key,
                data=data,
                chunks=(1,) + data.shape[1:] if len(data) else None,
                maxshape=(None,) + data.shape[1:],
            )
            dataset.attrs.update(attributes.get(key, {}))

    data = h5_bytes(fill)
    with atomic_path(path) as tmp:
        write_bytes(tmp, data, what=Path(path).name)
