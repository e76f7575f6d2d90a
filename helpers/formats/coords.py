"""TRIDENT's coords file, ``<name>_patches.h5``: dataset ``coords`` ``(N, 2)`` int64 level-0
``(x, y)`` top-left corners, with the attributes TRIDENT writes (``patch_size_level0``,
``level0_width``, ...), read with checks against the patch grid, and written."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from helpers.formats.h5 import REDO_COORDS, LabelInputError, read_dataset, save_h5
from helpers.grid import check_coords_level0

#: The attributes TRIDENT v0.3.0 stores on a coords dataset (see trident.coords_attributes).
COORDS_ATTRIBUTES = (
    "patch_size",
    "patch_size_level0",
    "level0_magnification",
    "target_magnification",
    "overlap",
    "name",
    "savetodir",
    "level0_width",
    "level0_height",
)


def _whole_positive(attrs: dict, key: str, path: Path) -> int | None:
    """Attribute ``key`` as an int when present (TRIDENT stores some as floats, 1024.0);
    :class:`LabelInputError` naming the file when it is not a whole number > 0 (NaN, 0, ...)."""
    if key not in attrs:
        return None
    value = attrs[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0 and number == round(number)):
        raise LabelInputError(
            f"{path}: the attribute {key}={value!r} of 'coords' is not a whole number > 0 "
            f"(a damaged file, or one TRIDENT did not write): {REDO_COORDS}."
        )
    return int(round(number))


def read_coords(path, patch_size_level0: int | None = None) -> tuple[dict, np.ndarray]:
    """Coordinates of a TRIDENT ``<name>_patches.h5`` file, checked against the patch size.

    Arguments:
        path: The h5 file, dataset ``coords`` ``(N, 2)`` int64 level-0 ``(x, y)``.
        patch_size_level0: Expected patch side in level-0 pixels. When given, it must equal the
            file's ``patch_size_level0`` attribute (if any), and the patch positions must lie
            on a grid of step ``patch_size_level0 - overlap``.

    Returns:
        ``(attrs, coords_level0 (N, 2) int64)`` where ``attrs`` are the attributes of
        ``coords``: the order of TRIDENT's ``read_coords``.
    """
    path = Path(path)
    coords_level0, attrs = read_dataset(path, "coords", "coords file")
    for key in ("patch_size_level0", "level0_width", "level0_height"):
        _whole_positive(attrs, key, path)  # NaN, 0 or 1.5: an error naming the file
    try:
        coords_level0 = check_coords_level0(coords_level0)
    except ValueError as exc:
        raise LabelInputError(f"{path}: {exc}") from exc
    if patch_size_level0 is not None:
        check_coords_spacing(coords_level0, int(patch_size_level0), attrs, path)
    return attrs, coords_level0


def check_coords_spacing(
    coords_level0: np.ndarray, patch_size_level0: int, attrs: dict, path: Path
) -> None:
    described = ", ".join(
        f"{k}={attrs[k]}"
        for k in ("patch_size", "patch_size_level0", "level0_magnification", "target_magnification")
        if k in attrs
    )
    hint = f" (the h5 attributes give {described})" if described else ""
    if "patch_size_level0" in attrs and int(attrs["patch_size_level0"]) != patch_size_level0:
        raise LabelInputError(
            f"{path.name}: patch_size_level0={patch_size_level0} was asked for but the coords "
            f"were made with patch_size_level0={int(attrs['patch_size_level0'])}{hint}. Pass "
            f"--patch_size {int(attrs['patch_size_level0'])} --patch_level 0, or leave "
            "--patch_size out to use each file's own."
        )
    step = patch_size_level0 - int(attrs.get("overlap", 0) or 0)
    if len(coords_level0) < 2 or step <= 0:
        return
    spacing = _spacing(coords_level0)
    if spacing not in (0, step):
        raise LabelInputError(
            f"{path.name}: the patches are spaced by {spacing} level-0 px, which does not match "
            f"patch_size_level0={patch_size_level0} (grid step {step}){hint}."
        )


def _spacing(coords_level0: np.ndarray) -> int:
    """The largest step every patch position is a multiple of (from the first patch), in
    level-0 px: the grid step of a coords file (0 for a single position)."""
    offsets = np.concatenate(
        [coords_level0[:, 0] - coords_level0[0, 0], coords_level0[:, 1] - coords_level0[0, 1]]
    )
    return int(np.gcd.reduce(np.abs(offsets))) if len(offsets) else 0


def check_patch_grid(
    coords_level0: np.ndarray, patch_size_level0: int, attrs: dict, path: str | os.PathLike
) -> None:
    """The patches of a coords file must each have their own cell of the patch grid.

    The bags' ``coords`` are grid cells (``coords_level0 // patch_size_level0``), and the
    adjacency, the heatmaps and the FROC are computed on them. A TRIDENT job made with
    ``--overlap`` (or a ``patch_size_level0`` that is not the coords' spacing) puts several
    patches in one cell: refused with a :class:`LabelInputError` naming the file and why.
    """
    overlap = attrs.get("overlap", 0)
    try:
        overlapping = float(overlap) != 0
    except (TypeError, ValueError):
        overlapping = True
    if overlapping:
        raise LabelInputError(
            f"{path}: the patches overlap (overlap={overlap!r}, TRIDENT's --overlap): this "
            "book's bags need one patch per grid cell (the adjacency, the heatmaps and the "
            "FROC work on the patch grid). Run TRIDENT's patching again with --overlap 0 (its "
            "default), extract the features of those patches, and point MIL_BOOK_PATCH_DIR at "
            "that job's folder."
        )
    if not len(coords_level0):
        return
    spacing = _spacing(coords_level0)
    if spacing % patch_size_level0 or len(np.unique(coords_level0, axis=0)) < len(coords_level0):
        raise LabelInputError(
            f"{path}: the patches are spaced by {spacing} level-0 px (or repeat), which is not "
            f"a multiple of patch_size_level0={patch_size_level0}: patches would share grid "
            f"cells. The file's patch_size_level0 does not match its coords: {REDO_COORDS}."
        )


def level0_size(attrs: dict, path: str | os.PathLike = "coords file") -> tuple[int, int] | None:
    """The slide's level-0 ``(width, height)`` from coords attributes, or ``None``;
    :class:`LabelInputError` naming ``path`` when they are not whole numbers > 0."""
    width = _whole_positive(attrs, "level0_width", Path(path))
    height = _whole_positive(attrs, "level0_height", Path(path))
    if width is not None and height is not None:
        return width, height
    return None


def coords_patch_size(attrs: dict, path: str | os.PathLike) -> int:
    """The ``patch_size_level0`` a coords file records, as an int (TRIDENT writes 1024.0);
    :class:`LabelInputError` naming the file when it is missing, NaN, 0 or not whole."""
    size = _whole_positive(attrs, "patch_size_level0", Path(path))
    if size is None:
        raise LabelInputError(
            f"{path} has no 'patch_size_level0' attribute on 'coords' (TRIDENT writes one; "
            f"attributes: {sorted(attrs)}): {REDO_COORDS}."
        )
    return size


def save_coords(path: str | os.PathLike, coords_level0: np.ndarray, attrs: dict) -> None:
    """Write ``<slide>_patches.h5``: dataset ``coords`` int64 ``(n_patches, 2)`` with ``attrs``."""
    coords_level0 = np.asarray(coords_level0, dtype=np.int64).reshape(-1, 2)
    save_h5(path, {"coords": coords_level0}, {"coords": attrs})
