"""Coordinate frames of a slide's patches, one home: level-0 pixels, grid cells, pyramid levels.

Two frames name a patch's place, and every name in ``helpers`` says which one it uses:

- ``coords_level0``: ``(N, 2)`` int ``(x, y)`` top-left corners in level-0 pixels (what
  TRIDENT writes in ``patches/*.h5``, what openslide's ``read_region`` takes);
- ``grid_xy``: ``(N, 2)`` int ``(x, y)`` patch-grid cells, ``coords_level0 //
  patch_size_level0`` (what torchmil's ``WSIDataset`` calls ``coords``, what the adjacency
  matrix, the canvases and the FROC work on). Always ``(x, y)``: column first, then row.

``patch_size_level0`` is a patch's side in level-0 pixels (1024 for a 512 px patch at 20x on a
40x slide); the patch's side in pixels at the magnification it was read is ``patch_size``.

Public API (``N`` patches)::

    check_coords_level0(coords_level0, patch_size_level0=None) -> (N, 2) int64
    check_grid_xy(grid_xy, n=None, where="") -> (N, 2) int64, distinct cells
    grid_xy(coords_level0, patch_size_level0) -> (N, 2) int64
    values_on_grid(values, grid_xy) -> (rows, cols) float64 image, NaN where no patch
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "check_coords_level0",
    "check_grid_xy",
    "grid_xy",
    "values_on_grid",
]


def _integer_array(values, name: str, frame: str, where: str = "") -> np.ndarray:
    """``values`` as an ``(N, 2)`` int64 array, or a ``ValueError`` naming ``frame``."""
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"{name}{where} must have shape (N, 2), got {arr.shape}.")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr) & (arr == np.round(arr))):
            raise ValueError(
                f"{name}{where} must be whole numbers ({frame}), got dtype {arr.dtype} "
                "with non-integer values."
            )
    return arr.astype(np.int64, copy=False)


def check_coords_level0(coords_level0, patch_size_level0: float | None = None) -> np.ndarray:
    """The one check of level-0 patch corners: ``(N, 2)`` whole numbers, as int64.

    Arguments:
        coords_level0: ``(N, 2)`` ``(x, y)`` top-left corners in level-0 pixels (ints, or
            floats holding whole numbers).
        patch_size_level0: If given, checked to be positive.

    Returns:
        ``(N, 2)`` int64 array (the input itself when it already is one).

    Raises:
        ValueError: wrong shape, non-integer values, or a patch size that is not positive.
    """
    if patch_size_level0 is not None and not float(patch_size_level0) > 0:
        raise ValueError(f"patch_size_level0 must be positive, got {patch_size_level0}.")
    return _integer_array(coords_level0, "coords_level0", "level-0 pixel positions")


def check_grid_xy(grid_xy, n: int | None = None, where: str = "") -> np.ndarray:
    """The check of patch-grid cells: ``(N, 2)`` whole numbers, one distinct cell per patch.

    Arguments:
        grid_xy: ``(N, 2)`` ``(x, y)`` grid cells (``coords_level0 // patch_size_level0``).
        n: If given, the number of rows ``grid_xy`` must have.
        where: Appended to the name in error messages (``" of slide 3"``).

    Raises:
        ValueError: wrong shape or length, non-integer values, or a cell used twice.
    """
    frame = "grid cells, coords_level0 // patch_size_level0"
    arr = _integer_array(grid_xy, "grid_xy", frame, where)
    if n is not None and len(arr) != n:
        raise ValueError(f"grid_xy{where} has {len(arr)} rows but there are {n} patches.")
    if len(np.unique(arr, axis=0)) != len(arr):
        raise ValueError(f"grid_xy{where} has duplicate grid cells; each patch needs its own.")
    return arr


def grid_xy(coords_level0, patch_size_level0: float) -> np.ndarray:
    """Level-0 corners -> grid cells: ``coords_level0 // patch_size_level0``, ``(N, 2)`` int64.

    The cells are not shifted: the patch at level-0 ``(0, 0)`` is cell ``(0, 0)``, as in
    torchmil's ``WSIDataset``.
    """
    coords_level0 = check_coords_level0(coords_level0, patch_size_level0)
    return (coords_level0 // patch_size_level0).astype(np.int64)


def values_on_grid(values, grid_xy) -> np.ndarray:
    """Per-patch values as an image of the patch grid, one pixel per cell.

    Pixel ``[y, x]`` holds the value of the patch in cell ``(x, y)``, so a point drawn at
    ``(x, y)`` with matplotlib lands on its patch; cells without a patch are NaN (drawn
    blank by ``imshow``).

    Arguments:
        values: ``(N,)`` one number per patch.
        grid_xy: ``(N, 2)`` int patch-grid cells ``(x, y)``, distinct.

    Returns:
        ``(max_y + 1, max_x + 1)`` float64.
    """
    grid_xy = check_grid_xy(grid_xy)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(values) != len(grid_xy):
        raise ValueError(f"{len(values)} values for {len(grid_xy)} grid cells.")
    image = np.full(grid_xy.max(0)[::-1] + 1 if len(grid_xy) else (0, 0), np.nan)
    image[grid_xy[:, 1], grid_xy[:, 0]] = values
    return image
