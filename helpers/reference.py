"""The slow reference ways, one home: one level-0 read per patch, as the earlier tutorial did.

The fast code in :mod:`helpers.canvas` and :mod:`helpers.coverage` is checked against these
(``tests/``) and timed against them (``benchmarks/``); no chapter needs them.

Public API (``N`` patches)::

    slide_canvas_per_patch(slide, coords_level0, patch_size_level0, cell_size=50)
        -> (canvas, rows, cols)
    tumor_fraction_per_patch(mask, coords_level0, patch_size_level0) -> (N,) float64
"""

from __future__ import annotations

import cv2
import numpy as np
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from helpers.canvas import canvas_rows_cols
from helpers.grid import check_coords_level0
from helpers.slide import open_slide, to_rgb

__all__ = ["slide_canvas_per_patch", "tumor_fraction_per_patch"]


def slide_canvas_per_patch(
    slide,
    coords_level0: np.ndarray,
    patch_size_level0: int,
    cell_size: int = 50,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read every patch at level 0, shrink it, place it on the ``torchmil.visualize`` canvas.

    The reference for :func:`helpers.canvas.slide_canvas`: same arguments and returns.
    """
    from torchmil.visualize import patches_to_canvas

    coords_level0 = check_coords_level0(coords_level0, patch_size_level0)
    if int(cell_size) <= 0:
        raise ValueError(f"cell_size must be positive, got {cell_size}.")
    patch_size_level0, cell_size = int(patch_size_level0), int(cell_size)
    size = (patch_size_level0, patch_size_level0)
    slide, opened = open_slide(slide, "slide")
    try:
        patches = []
        for x, y in tqdm(coords_level0, desc="reading patches", disable=not progress):
            patch = to_rgb(np.asarray(slide.read_region((int(x), int(y)), 0, size)))
            patches.append(cv2.resize(patch, (cell_size, cell_size)))
    finally:
        if opened:
            slide.close()
    rows, cols = canvas_rows_cols(coords_level0, patch_size_level0)
    return patches_to_canvas(patches, rows, cols, cell_size), rows, cols


def tumor_fraction_per_patch(
    mask,
    coords_level0: np.ndarray,
    patch_size_level0: int,
    tumor_value: int = 2,
    progress: bool = False,
) -> np.ndarray:
    """The slow reference: one level-0 read of the mask per patch (what the earlier script did).

    Used by the tests and the benchmark to check
    :func:`helpers.coverage.tumor_fraction_from_mask`.

    Returns:
        fractions: ``(N,)`` float64, exact at level 0.
    """
    coords_level0 = check_coords_level0(coords_level0)
    slide, opened = open_slide(mask, "mask")
    try:
        out = np.zeros(len(coords_level0), dtype=np.float64)
        size = (patch_size_level0, patch_size_level0)
        for i, (x, y) in enumerate(
            tqdm(coords_level0, desc="per-patch mask reads", disable=not progress)
        ):
            patch = np.asarray(slide.read_region((int(x), int(y)), 0, size))[:, :, 0]
            out[i] = np.count_nonzero(patch == tumor_value) / patch.size
        return out
    finally:
        if opened:
            slide.close()
