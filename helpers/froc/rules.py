"""The FROC's rules on a patch grid (see :mod:`helpers.froc`): lesions (tumour cells, the
margin, holes filled, 8-connected), their extent and grade, and the predictions (local maxima
of the scores) that hit them or are false positives (:func:`slide_detections`;
:func:`slide_detections_with_itc` for :mod:`helpers.froc.scoring`)."""

from __future__ import annotations

import math
from typing import cast

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from helpers.grid import check_grid_xy

#: A cell whose centre is closer than this to a tumour cell belongs to its lesion (um): half
#: the 75 um by which the challenge widens every annotation.
MARGIN_UM = 37.5
#: Lesions with a smaller extent are isolated tumour cells (um): out of the FROC, and an
#: 'ITC' slide in :func:`grade_slide` (the AJCC's 0.2 mm).
ITC_MAX_UM = 200.0
#: Lesions up to this extent are micro-metastases, larger ones macro-metastases (um: 2 mm).
MICRO_MAX_UM = 2000.0
#: Above this many tumour cells, a lesion's span is measured on its outline only.
_MAX_SPAN_CELLS = 4000

# The 8 neighbours of a grid cell, as (dx, dy).
_OFFSETS = np.array([(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1) if (dx, dy) != (0, 0)])


# ----------------------------------------------------------------------------- checks


def _check_vector(values, n: int | None, name: str, where: str = "") -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name}{where} must have shape (N,), got {arr.shape}.")
    if n is not None and len(arr) != n:
        raise ValueError(f"{name}{where} has {len(arr)} values but grid_xy has {n} rows.")
    return arr


def _check_scores(scores, n: int, where: str = "") -> np.ndarray:
    arr = _check_vector(scores, n, "scores", where).astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"scores{where} contains NaN or infinite values.")
    return arr


def _check_labels(y_inst, n: int, where: str = "") -> np.ndarray:
    arr = _check_vector(y_inst, n, "y_inst", where)
    values = np.unique(arr)
    if not np.all(np.isin(values, (0, 1))):
        raise ValueError(f"y_inst{where} must hold 0 (normal) and 1 (tumor), got {values[:10]}.")
    return arr.astype(np.int64)


# ----------------------------------------------------------------------------- the grid


def _keys(grid_xy: np.ndarray) -> tuple[np.ndarray, int]:
    """One int64 per cell, such that cell + offset maps to a distinct key (no wrap-around),
    and the key step of one column (``key + dx * height + dy`` is the cell at ``(dx, dy)``)."""
    lo = grid_xy.min(0)
    height = int(grid_xy[:, 1].max() - lo[1]) + 3
    return (grid_xy[:, 0] - lo[0] + 1) * height + (grid_xy[:, 1] - lo[1] + 1), height


def _neighbours(grid_xy: np.ndarray) -> np.ndarray:
    """Index of each of the 8 neighbours of every patch, ``-1`` where it is absent: ``(N, 8)``."""
    n = len(grid_xy)
    if n == 0:
        return np.zeros((0, len(_OFFSETS)), dtype=np.int64)
    keys, height = _keys(grid_xy)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    out = np.full((n, len(_OFFSETS)), -1, dtype=np.int64)
    for k, (dx, dy) in enumerate(_OFFSETS):
        target = keys + dx * height + dy
        pos = np.clip(np.searchsorted(sorted_keys, target), 0, n - 1)
        found = sorted_keys[pos] == target
        out[found, k] = order[pos[found]]
    return out


def _components(nb: np.ndarray, member: np.ndarray, joined: np.ndarray) -> np.ndarray:
    """Connected components of ``member`` patches along neighbour links where ``joined`` holds.

    ``nb`` ``(N, 8)`` neighbour indices, ``member`` ``(N,)`` bool, ``joined`` ``(N, 8)`` bool.
    Returns ``(N,)`` int: ``-1`` for non-members, else a component id ``0..C-1``.
    """
    n = len(nb)
    rows, cols = np.nonzero((nb >= 0) & joined & member[:, None])
    dst = nb[rows, cols]
    keep = member[dst]
    graph = coo_matrix((np.ones(keep.sum()), (rows[keep], dst[keep])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    out = np.full(n, -1, dtype=np.int64)
    # Renumber the member components 0..C-1 in order of first appearance.
    _, first, inverse = np.unique(comp[member], return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    out[member] = rank[inverse.ravel()]
    return out


def local_maxima(scores: np.ndarray, grid_xy: np.ndarray) -> np.ndarray:
    """Local maxima of the instance scores on a slide's patch grid: the predicted points.

    A patch's neighbours are the (up to 8) patches of the bag in the adjacent grid cells,
    diagonals included; cells without a patch (background) are ignored.

    - A patch with a neighbour of strictly higher score is not a maximum.
    - A *plateau* is a group of patches with equal scores connected through neighbours. A
      plateau is a maximum when every patch bordering it scores strictly lower; it then gives
      **one** prediction, at its first patch in raster order (smallest ``y``, then smallest
      ``x``). A single patch that beats all its neighbours is a plateau of one; a patch with
      no neighbour at all is a maximum.

    So a constant heatmap gives one prediction per connected piece of tissue, not one per
    patch.

    Arguments:
        scores: ``(N,)`` instance scores (finite).
        grid_xy: ``(N, 2)`` int patch-grid cells ``(x, y)``, one distinct cell per patch.

    Returns:
        ``(N,)`` bool, True at the predicted points.
    """
    grid_xy = check_grid_xy(grid_xy)
    scores = _check_scores(scores, len(grid_xy))
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=bool)
    nb = _neighbours(grid_xy)
    present = nb >= 0
    nb_scores = np.where(present, scores[np.maximum(nb, 0)], -np.inf)  # (N, 8)
    # (N,) True where no neighbour scores strictly higher
    candidate = np.asarray(~(nb_scores > scores[:, None]).any(1))
    equal = present & (nb_scores == scores[:, None])  # (N, 8)
    # Candidates that touch each other have equal scores: group them into plateaus.
    plateau = _components(nb, candidate, equal)
    # A plateau that touches an equal-scoring non-candidate continues towards something
    # higher, so it is not a maximum.
    leaks = candidate[:, None] & equal & ~candidate[np.maximum(nb, 0)]
    bad = np.unique(plateau[leaks.any(1)])
    ok = candidate & ~np.isin(plateau, bad)
    # One point per plateau: its first patch in raster order (y, then x).
    idx = np.nonzero(ok)[0]
    raster = np.lexsort((grid_xy[idx, 0], grid_xy[idx, 1]))
    idx = idx[raster]
    _, first = np.unique(plateau[idx], return_index=True)
    out = np.zeros(n, dtype=bool)
    out[idx[first]] = True
    return out


# ----------------------------------------------------------------------------- lesions


def _check_fractions(values, n: int, where: str = "") -> np.ndarray:
    arr = _check_vector(values, n, "tumor_fraction", where).astype(np.float64)
    if not np.all(np.isfinite(arr) & (arr >= 0) & (arr <= 1)):
        raise ValueError(f"tumor_fraction{where} must hold fractions in [0, 1].")
    return arr


def _check_patch_um(patch_um, where: str = "") -> float | None:
    if patch_um is None:
        return None
    value = float(patch_um)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"patch_um{where} must be a positive number of microns, got {patch_um}.")
    return value


def _tumour(y_inst, tumor_fraction, n: int, where: str = "") -> np.ndarray:
    """Each patch's tumour weight ``(N,)`` in [0, 1]: its fraction, else its 0/1 label."""
    if tumor_fraction is not None:
        if y_inst is not None:
            _check_vector(y_inst, n, "y_inst", where)
        return _check_fractions(tumor_fraction, n, where)
    if y_inst is None:
        raise ValueError(f"y_inst{where} or tumor_fraction{where} is needed.")
    return _check_labels(y_inst, n, where).astype(np.float64)


def _margin_footprint(patch_um: float | None) -> np.ndarray:
    """The cells whose centre lies within :data:`MARGIN_UM` of the square of the middle cell."""
    if patch_um is None:
        return np.ones((1, 1), dtype=bool)
    r = max(0, math.ceil(MARGIN_UM / patch_um + 0.5))
    d = np.maximum(np.abs(np.arange(-r, r + 1)) - 0.5, 0.0) * patch_um
    return np.hypot(d[:, None], d[None, :]) < MARGIN_UM


def _extent_um(cells: np.ndarray, weights: np.ndarray, patch_um: float) -> float:
    """Extent of one lesion from its tumour cells and their fractions (see :func:`lesion_table`)."""
    diameter = 2.0 * math.sqrt(float(weights.sum()) * patch_um**2 / math.pi)
    pts, g = cells.astype(np.float64), weights.astype(np.float64) - 0.5
    if len(pts) > _MAX_SPAN_CELLS:  # a large lesion: its outline (row and column ends) only
        keep = np.zeros(len(pts), dtype=bool)
        for axis in (0, 1):
            other = pts[:, 1 - axis]
            order = np.lexsort((pts[:, axis], other))
            new = np.r_[True, other[order][1:] != other[order][:-1]]
            keep[order[new | np.r_[new[1:], True]]] = True
        pts, g = pts[keep], g[keep]
    span = -np.inf
    for start in range(0, len(pts), 512):
        block = pts[start : start + 512]
        d = np.sqrt(((block[:, None, :] - pts[None, :, :]) ** 2).sum(-1))
        span = max(span, float((d + g[start : start + 512, None] + g[None, :]).max()))
    return max(diameter, span * patch_um)


def _slide_lesions(
    weight: np.ndarray, grid_xy: np.ndarray, patch_um: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(labels (N,), extent_um (K,), itc (K,))`` of one slide (already checked inputs)."""
    n = len(grid_xy)
    tumour = weight > 0
    if not tumour.any():
        return np.zeros(n, dtype=np.int64), np.zeros(0), np.zeros(0, dtype=bool)
    footprint = _margin_footprint(patch_um)
    pad = footprint.shape[0] // 2 + 1
    lo = grid_xy.min(0)
    col = grid_xy[:, 0] - lo[0] + pad
    row = grid_xy[:, 1] - lo[1] + pad
    raster = np.zeros((row.max() + pad + 1, col.max() + pad + 1), dtype=bool)
    raster[row[tumour], col[tumour]] = True
    if footprint.size > 1:
        raster = ndimage.binary_dilation(raster, structure=footprint)
    raster = ndimage.binary_fill_holes(raster)
    # (labels, count): scipy types the count alone too (what it returns given an output array)
    labelled, _ = cast(
        "tuple[np.ndarray, int]", ndimage.label(raster, structure=np.ones((3, 3), dtype=bool))
    )
    raw = labelled[row, col]
    # Renumber 1..K in the order in which each lesion's first patch appears in the bag.
    labels = np.zeros(n, dtype=np.int64)
    inside = raw > 0
    _, first, inverse = np.unique(raw[inside], return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))
    labels[inside] = rank[inverse.ravel()] + 1
    k = len(first)
    extent = np.full(k, np.nan)
    if patch_um is not None:
        for lesion in range(1, k + 1):
            member = (labels == lesion) & tumour
            extent[lesion - 1] = _extent_um(grid_xy[member], weight[member], patch_um)
    itc = extent < ITC_MAX_UM  # False where NaN (no patch size: no ITC rule)
    return labels, extent, itc


def lesions(
    y_inst: np.ndarray | None,
    grid_xy: np.ndarray,
    *,
    tumor_fraction: np.ndarray | None = None,
    patch_um: float | None = None,
) -> np.ndarray:
    """Lesions of a slide (see the module docstring): tumour cells, the 37.5 um margin when
    ``patch_um`` is given, holes filled, 8-connected components. ITC-sized lesions included.

    Arguments:
        y_inst: ``(N,)`` patch labels, 0 (normal) or 1 (tumour); used for the tumour cells only
            when ``tumor_fraction`` is None (may then be None itself).
        grid_xy: ``(N, 2)`` int patch-grid cells ``(x, y)``.
        tumor_fraction: ``(N,)`` tumour fraction of each patch; tumour cells are those > 0.
        patch_um: a patch's side in microns; None: no margin.

    Returns:
        ``(N,)`` int64: 0 outside every lesion, else the lesion id ``1..K``, numbered in the
        order in which each lesion's first patch appears in the bag.
    """
    grid_xy = check_grid_xy(grid_xy)
    weight = _tumour(y_inst, tumor_fraction, len(grid_xy))
    return _slide_lesions(weight, grid_xy, _check_patch_um(patch_um))[0]


def lesion_table(
    y_inst: np.ndarray | None,
    grid_xy: np.ndarray,
    *,
    tumor_fraction: np.ndarray | None = None,
    patch_um: float | None = None,
) -> pd.DataFrame:
    """One row per lesion of a slide (arguments as in :func:`lesions`).

    Columns: ``lesion`` (the id :func:`lesions` gives), ``n_patches`` (cells of the bag in
    the lesion, margin included), ``n_tumor_patches``, ``extent_um`` (the estimated extent,
    NaN without ``patch_um``) and ``itc`` (``extent_um`` < :data:`ITC_MAX_UM`).

    The extent is the larger of the area-equivalent diameter of the lesion's tumour
    (``2 sqrt(sum(f) / pi) * patch_um``) and the largest ``(d_ij + f_i + f_j - 1) *
    patch_um`` over pairs of its tumour cells (``d_ij`` their centre distance in cells, the
    tumour assumed to reach ``f`` of a patch deep from the side facing the rest of the
    lesion): ``n * patch_um`` for ``n`` whole patches in a row.
    """
    grid_xy = check_grid_xy(grid_xy)
    weight = _tumour(y_inst, tumor_fraction, len(grid_xy))
    labels, extent, itc = _slide_lesions(weight, grid_xy, _check_patch_um(patch_um))
    ids = np.arange(1, len(extent) + 1)
    return pd.DataFrame(
        {
            "lesion": ids,
            "n_patches": [int((labels == i).sum()) for i in ids],
            "n_tumor_patches": [int(((labels == i) & (weight > 0)).sum()) for i in ids],
            "extent_um": extent,
            "itc": itc.astype(bool),
        }
    )


def grade_slide(
    label: int,
    y_inst: np.ndarray | None,
    grid_xy: np.ndarray,
    *,
    patch_um: float,
    tumor_fraction: np.ndarray | None = None,
) -> str:
    """'normal', 'ITC', 'micro' or 'macro': a slide graded by its largest lesion's extent.

    ``label`` 0 is 'normal'. A tumour slide is 'ITC' when its largest lesion measures less
    than :data:`ITC_MAX_UM` (0.2 mm) or when none of its patches holds tumour on the grid,
    'micro' up to :data:`MICRO_MAX_UM` (2 mm), 'macro' beyond (extents as in
    :func:`lesion_table`, which needs ``patch_um``).
    """
    if int(label) == 0:
        return "normal"
    if patch_um is None:
        raise ValueError("grade_slide needs patch_um (a patch's side in microns).")
    table = lesion_table(y_inst, grid_xy, tumor_fraction=tumor_fraction, patch_um=patch_um)
    largest = float(table["extent_um"].max()) if len(table) else 0.0
    if largest < ITC_MAX_UM:
        return "ITC"
    return "micro" if largest <= MICRO_MAX_UM else "macro"


def slide_detections(
    scores: np.ndarray,
    y_inst: np.ndarray | None,
    grid_xy: np.ndarray,
    *,
    tumor_fraction: np.ndarray | None = None,
    patch_um: float | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Score one slide's predictions against its lesions.

    Returns ``(lesion_scores, fp_scores, n_points)``: ``lesion_scores`` ``(K,)`` holds, for
    each lesion that is not ITC-sized, the highest score of a prediction that hits it
    (``-inf`` if none does), ``fp_scores`` the scores of the predictions outside every lesion,
    and ``n_points`` the number of predicted points (extra hits and points on ITC lesions
    included).
    """
    return slide_detections_with_itc(
        scores, y_inst, grid_xy, tumor_fraction=tumor_fraction, patch_um=patch_um
    )[:3]


def slide_detections_with_itc(
    scores: np.ndarray,
    y_inst: np.ndarray | None,
    grid_xy: np.ndarray,
    *,
    tumor_fraction: np.ndarray | None = None,
    patch_um: float | None = None,
    where: str = "",
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """:func:`slide_detections`, plus the number of ITC lesions (what the FROC reports).

    ``where`` ends the message of an input's error (``" of slide 3"``).
    """
    grid_xy = check_grid_xy(grid_xy, where=where)
    scores = _check_scores(scores, len(grid_xy), where)
    weight = _tumour(y_inst, tumor_fraction, len(grid_xy), where)
    labels, _, itc = _slide_lesions(weight, grid_xy, _check_patch_um(patch_um, where))
    peaks = local_maxima(scores, grid_xy)
    best = np.full(len(itc), -np.inf)
    hit = peaks & (labels > 0)
    np.maximum.at(best, labels[hit] - 1, scores[hit])
    fp_scores = scores[peaks & (labels == 0)]
    return best[~itc], fp_scores, int(peaks.sum()), int(itc.sum())
