"""Lesion-level FROC (CAMELYON16's localization metric) on patch-grid heatmaps.

CAMELYON16 ranks localization by the free-response ROC: a detector outputs scored points,
a point inside a tumour region finds that lesion, a point outside every lesion is a false
positive, and the FROC score is the mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 false
positives per slide. The challenge's ``Evaluation_FROC.py`` works on a pixel mask; here
everything lives on the patch grid of a slide: ``grid_xy``, the ``(x, y)`` cells level-0
corners // ``patch_size_level0`` (what ``TridentWSIDataset`` calls ``coords``,
``Predictions.grid_xy``). Nothing guesses the frame: level-0 pixels would read as cells far
apart, so convert them with :func:`helpers.grid.grid_xy` first. ``patch_um`` is a patch's
side in microns (``patch_size_level0`` x the slide's level-0 microns per pixel).

The rules, as close to the challenge's as a patch grid allows:

- **tumour cells** are the patches with ``tumor_fraction > 0`` (the fraction of the patch
  inside the tumour annotation, stored beside the labels in ``patch_labels/<name>.h5``).
  Given only ``y_inst`` (no fractions), the tumour cells are the patches with
  ``y_inst == 1`` (more than half tumour), each counted as fully tumour;
- **lesions** (the challenge's evaluation mask): the tumour cells plus every grid cell whose
  centre lies less than 37.5 um (:data:`MARGIN_UM`, half the challenge's 75 um, "the size
  of 5 tumour cells") from a tumour cell's square; holes enclosed by that zone filled (as
  ``scipy.ndimage.binary_fill_holes`` on a dense raster of the grid's bounding box); then
  8-connected components (cells that touch by an edge or a corner). With patches of 75 um
  or more the margin adds no cell; with smaller ones it adds a ring, and two tumour regions
  less than 75 um apart become one lesion;
- **isolated tumour cells (ITC)**: a lesion whose extent is under 200 um (:data:`ITC_MAX_UM`;
  the challenge's 275 um major axis on the 75-um-expanded region). The extent is estimated
  from the grid (:func:`lesion_table`) as the larger of the area-equivalent diameter
  ``2 sqrt(A / pi)``, ``A = sum(tumor_fraction) * patch_um**2`` over the lesion's tumour
  cells, and their largest span ``d_ij + (f_i + f_j - 1) * patch_um`` over pairs of them
  (``d_ij`` the centre-to-centre distance, ``f`` the fractions): edge to edge for whole
  tumour patches, and only the tumour's depth in each patch for a sliver of tumour across
  a patch border (two patches at 7 % and 0.3 % are not a 0.26 mm lesion). ITC lesions are
  not counted in the denominator, and a point on one is neither a hit nor a false positive;
- **predictions** are the local maxima of the instance scores on the grid (see
  :func:`local_maxima`, plateaus included), each scored by its patch's score;
- a prediction on a (non-ITC) lesion's cell is a **hit** for that lesion. A lesion hit
  several times counts once, at its highest score; the other hits are neither true nor false
  positives. A prediction outside every lesion is a **false positive** (on a normal slide,
  every prediction).

Without ``patch_um`` there is no margin and no ITC exclusion (the pure-patch rules: lesions
are the 8-connected tumour cells, holes filled, all counted).

One threshold is swept over the scores of all predictions of all slides (normal slides only
contribute false positives), so the scores must be on a common scale across slides: use a
score that does not depend on the rest of the bag (pre-softmax attention, an instance
logit or probability), not one normalised within each bag. At threshold ``t``::

    sensitivity(t)    = #lesions with a hit scoring >= t / #lesions (ITC excluded)
    FPs per slide(t)  = #false positives scoring >= t   / #slides

The operating points are ``t = +inf`` (0, 0) and every distinct prediction score. The
sensitivity at a rate ``r`` is read as the challenge does, ``np.interp(r, fps, sens)`` on the
operating points in order of decreasing threshold: linear between the last (highest) point
at one FP level and the first (lowest) point at the next, the highest point when ``r`` is
an FP level itself, the last sensitivity beyond the last point. The FROC score is the mean
over the rates (1/4, 1/2, 1, 2, 4, 8).

What still differs from the challenge:

- points are the centres of patches at local maxima of a patch grid, not free pixel
  positions, and the evaluation mask is made of whole cells (a cell is in the margin when
  its centre is), so lesions are resolved to a patch;
- the extent of a lesion is estimated from patch fractions and cell centres, not measured on
  the mask (the challenge takes the major axis of the expanded region's moment ellipse);
- the AJCC's other ITC criterion, at most 200 cells, cannot be applied;
- the challenge's ``computeFROC`` builds its thresholds from the sorted distinct scores of
  the false positives and of every lesion (a missed or ITC lesion scores 0) and skips the
  lowest (``all_probs[1:]``): usually that drops only the 0 of missed lesions, but when
  every lesion is hit it also drops the lowest real operating point. Every distinct score
  is an operating point here;
- on CAMELYON16, test_114 is left out of the official lesion-level evaluation (leave it out
  of the slides passed here to compare with published numbers).

Public API (shapes: ``N`` patches of one slide; per-slide lists for :func:`froc`)::

    local_maxima(scores (N,), grid_xy (N, 2)) -> (N,) bool
    lesions(y_inst (N,), grid_xy, *, tumor_fraction=None, patch_um=None) -> (N,) int  (0, 1..K)
    lesion_table(y_inst, grid_xy, *, tumor_fraction=None, patch_um=None) -> DataFrame
    grade_slide(label, y_inst, grid_xy, *, patch_um, tumor_fraction=None) -> str
    slide_detections(scores, y_inst, grid_xy, *, tumor_fraction=None, patch_um=None)
    froc(scores, y_inst, grid_xy, fp_rates=FP_RATES, *, tumor_fraction=None, patch_um=None)
        -> FROCResult
    froc_from_predictions(preds, scores="raw") -> FROCResult  (a helpers.evaluation.Predictions)
    plot_froc(result, ax=None, label=None) -> matplotlib Axes
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from helpers.grid import check_grid_xy, minmax

__all__ = [
    "FP_RATES",
    "MARGIN_UM",
    "ITC_MAX_UM",
    "MICRO_MAX_UM",
    "FROCResult",
    "local_maxima",
    "lesions",
    "lesion_table",
    "grade_slide",
    "slide_detections",
    "froc",
    "interpolate",
    "froc_from_predictions",
    "slide_detections_of",
    "froc_of_detections",
    "plot_froc",
]

FP_RATES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
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

    Args:
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
    candidate = ~(nb_scores > scores[:, None]).any(1)  # no strictly higher neighbour
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
    labelled, _ = ndimage.label(raster, structure=np.ones((3, 3), dtype=bool))
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

    Args:
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
    grid_xy = check_grid_xy(grid_xy)
    scores = _check_scores(scores, len(grid_xy))
    weight = _tumour(y_inst, tumor_fraction, len(grid_xy))
    return _detections(scores, weight, grid_xy, _check_patch_um(patch_um))[:3]


def _detections(
    scores: np.ndarray, weight: np.ndarray, grid_xy: np.ndarray, patch_um: float | None
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """:func:`slide_detections` on checked inputs, plus the number of ITC lesions."""
    labels, _, itc = _slide_lesions(weight, grid_xy, patch_um)
    peaks = local_maxima(scores, grid_xy)
    best = np.full(len(itc), -np.inf)
    hit = peaks & (labels > 0)
    np.maximum.at(best, labels[hit] - 1, scores[hit])
    fp_scores = scores[peaks & (labels == 0)]
    return best[~itc], fp_scores, int(peaks.sum()), int(itc.sum())


# ----------------------------------------------------------------------------- the curve


@dataclass
class FROCResult:
    """A FROC curve and its score.

    Attributes:
        fps_per_slide: ``(P,)`` average false positives per slide at each operating point,
            non-decreasing; the first point (threshold above every score) is 0.
        sensitivity: ``(P,)`` fraction of lesions found at each operating point
            (NaN when there are no lesions).
        thresholds: ``(P,)`` the score threshold of each operating point (``+inf`` first).
        sensitivity_at: ``{rate: sensitivity}`` at each requested FP rate (interpolated as
            the challenge does, see the module docstring and :func:`interpolate`).
        score: mean of ``sensitivity_at`` (the FROC score; NaN when there are no lesions).
        n_lesions: number of lesions over all slides (ITC-sized lesions excluded).
        n_slides: number of slides.
        n_predictions: number of predicted points (local maxima) over all slides.
        n_itc: number of ITC-sized lesions left out.
    """

    fps_per_slide: np.ndarray
    sensitivity: np.ndarray
    thresholds: np.ndarray
    sensitivity_at: dict[float, float]
    score: float
    n_lesions: int
    n_slides: int
    n_predictions: int = 0
    fp_rates: tuple[float, ...] = field(default=FP_RATES)
    n_itc: int = 0

    def __repr__(self) -> str:
        at = ", ".join(f"{r:g}: {s:.3f}" for r, s in self.sensitivity_at.items())
        return (
            f"FROCResult(score={self.score:.3f}, sensitivity_at={{{at}}}, "
            f"n_lesions={self.n_lesions}, n_slides={self.n_slides})"
        )


def _per_slide(values, n_slides: int, name: str) -> list:
    """``values`` as one entry per slide: None, a scalar repeated, or a sequence of them."""
    if values is None:
        return [None] * n_slides
    if isinstance(values, (int, float, np.number)):
        return [values] * n_slides
    values = list(values)
    if len(values) != n_slides:
        raise ValueError(f"{name} must hold one entry per slide ({n_slides}), got {len(values)}.")
    return values


def froc(
    scores: Sequence[np.ndarray],
    y_inst: Sequence[np.ndarray] | None,
    grid_xy: Sequence[np.ndarray],
    fp_rates: Sequence[float] = FP_RATES,
    *,
    tumor_fraction: Sequence[np.ndarray] | None = None,
    patch_um: float | Sequence[float | None] | None = None,
) -> FROCResult:
    """Lesion-level FROC over a set of slides (see the module docstring for the rules).

    Args:
        scores: one ``(N_i,)`` array of instance scores per slide, on a scale shared by all
            slides (raw attention or instance logits, not per-bag normalised values).
        y_inst: one ``(N_i,)`` array of patch labels (0/1) per slide; the tumour cells when
            ``tumor_fraction`` is None (then None is allowed here).
        grid_xy: one ``(N_i, 2)`` int array of patch-grid cells ``(x, y)`` per slide
            (level-0 corners // ``patch_size_level0``; ``Predictions.grid_xy``).
        fp_rates: false positives per slide at which sensitivity is read (positive).
        tumor_fraction: one ``(N_i,)`` array of tumour fractions per slide (tumour cells:
            fraction > 0; the lesions' areas), or None.
        patch_um: a patch's side in microns, one for all slides or one per slide; needed for
            the 37.5 um margin and the ITC rule. None: neither (the pure-patch rules).

    Returns:
        A :class:`FROCResult`. With no lesion at all the sensitivities and the score are NaN
        (with a warning); the false-positive axis is still computed.
    """
    if y_inst is None:
        if tumor_fraction is None:
            raise ValueError("froc needs y_inst or tumor_fraction.")
        y_inst = [None] * len(tumor_fraction)
    scores, y_inst, grid_xy = _check_slides(scores, y_inst, grid_xy)
    fractions = _per_slide(tumor_fraction, len(scores), "tumor_fraction")
    sizes = _per_slide(patch_um, len(scores), "patch_um")
    rates = tuple(float(r) for r in fp_rates)
    if not rates or any(not np.isfinite(r) or r <= 0 for r in rates):
        raise ValueError(f"fp_rates must be positive numbers, got {fp_rates}.")

    lesion_scores, fp_scores, n_points, n_itc = [], [], 0, 0
    for i, (s, y, cells, f, p) in enumerate(
        zip(scores, y_inst, grid_xy, fractions, sizes, strict=True)
    ):
        where = f" of slide {i}"
        cells = check_grid_xy(cells, where=where)
        s = _check_scores(s, len(cells), where)
        weight = _tumour(y, f, len(cells), where)
        lesion_s, fp_s, n, itc = _detections(s, weight, cells, _check_patch_um(p, where))
        lesion_scores.append(lesion_s)
        fp_scores.append(fp_s)
        n_points += n
        n_itc += itc
    result = _curve(np.concatenate(lesion_scores), np.concatenate(fp_scores), len(scores), rates)
    result.n_predictions = n_points
    result.n_itc = n_itc
    return result


def _check_slides(scores, y_inst, grid_xy) -> tuple[list, list, list]:
    """The three per-slide sequences as lists of equal, non-zero length, or a clear error."""
    if isinstance(scores, np.ndarray) and scores.dtype != object:
        raise TypeError("scores must be a list with one array per slide, not a single array.")
    scores, y_inst, grid_xy = list(scores), list(y_inst), list(grid_xy)
    if not (len(scores) == len(y_inst) == len(grid_xy)):
        raise ValueError(
            f"scores, y_inst and grid_xy must hold one array per slide each; got "
            f"{len(scores)}, {len(y_inst)} and {len(grid_xy)}."
        )
    if len(scores) == 0:
        raise ValueError("froc needs at least one slide.")
    return scores, y_inst, grid_xy


def interpolate(fps: np.ndarray, sens: np.ndarray, x) -> np.ndarray:
    """Sensitivity at FP rates ``x`` on operating points ``(fps, sens)`` (both non-decreasing,
    in order of decreasing threshold), as ``np.interp(x, fps, sens)`` reads them: at an FP
    level shared by several points, the highest of their sensitivities; between two levels,
    linear from the highest point of the lower level to the lowest point of the higher one;
    beyond the last level, the last sensitivity (before the first, the first)."""
    fps, sens = np.asarray(fps, dtype=np.float64), np.asarray(sens, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    levels, first = np.unique(fps, return_index=True)
    last = np.r_[first[1:] - 1, len(fps) - 1]
    top, bottom = sens[last], sens[first]
    j = np.clip(np.searchsorted(levels, x, side="right") - 1, 0, len(levels) - 1)
    out = top[j].copy()
    inner = (x > levels[j]) & (j < len(levels) - 1)
    k = j[inner]
    t = (x[inner] - levels[k]) / (levels[k + 1] - levels[k])
    out[inner] = top[k] + t * (bottom[k + 1] - top[k])
    out[x < levels[0]] = bottom[0]
    return out


def _curve(
    lesion_scores: np.ndarray, fp_scores: np.ndarray, n_slides: int, rates: tuple[float, ...]
) -> FROCResult:
    """The FROC curve from every lesion's best hit score (``-inf``: missed) and every FP score."""
    n_lesions = len(lesion_scores)
    hits = lesion_scores[np.isfinite(lesion_scores)]
    # Operating points: +inf (nothing predicted), then every distinct prediction score.
    thresholds = np.concatenate([[np.inf], np.unique(np.concatenate([hits, fp_scores]))[::-1]])
    fp_sorted, hit_sorted = np.sort(fp_scores), np.sort(hits)
    n_fp = len(fp_sorted) - np.searchsorted(fp_sorted, thresholds, side="left")  # score >= t
    n_tp = len(hit_sorted) - np.searchsorted(hit_sorted, thresholds, side="left")
    fps = n_fp / n_slides
    if n_lesions == 0:
        warnings.warn(
            "No lesion in these slides: sensitivity and FROC are undefined (NaN).", stacklevel=3
        )
        sens = np.full(len(thresholds), np.nan)
        at = dict.fromkeys(rates, float("nan"))
        score = float("nan")
    else:
        sens = n_tp / n_lesions
        at = dict(zip(rates, map(float, interpolate(fps, sens, rates)), strict=True))
        score = float(np.mean(list(at.values())))
    return FROCResult(
        fps_per_slide=fps,
        sensitivity=sens,
        thresholds=thresholds,
        sensitivity_at=at,
        score=score,
        n_lesions=n_lesions,
        n_slides=n_slides,
        fp_rates=rates,
    )


def froc_from_predictions(
    preds, scores: str = "raw", fp_rates: Sequence[float] = FP_RATES
) -> FROCResult:
    """FROC of a :class:`helpers.evaluation.Predictions` (all its slides, normal ones included).

    When the predictions carry ``tumor_fraction`` and ``patch_um`` (``predict`` fills them
    from a dataset with patch labels), the margin and ITC rules apply; otherwise the
    pure-patch rules on ``y_inst`` (see :func:`froc`).

    Args:
        preds: the output of ``helpers.evaluation.predict`` (``inst_scores``, ``y_inst``,
            ``grid_xy``, ``prob`` and, when present, ``tumor_fraction`` and ``patch_um``).
        scores: which instance scores rank the predictions across slides:
            ``"raw"`` the model's instance scores as they are (pre-softmax attention for
            ABMIL: a function of the patch alone, so comparable between slides);
            ``"bag_weighted"`` each bag's scores min-max scaled to [0, 1]
            (:func:`helpers.grid.minmax`: all 0 for a bag of equal scores) and multiplied by
            the bag's predicted probability, so that slides the model calls normal put
            their points at the bottom of the ranking.
        fp_rates: see :func:`froc`.
    """
    if scores == "raw":
        inst = [np.asarray(s, dtype=np.float64) for s in preds.inst_scores]
    elif scores == "bag_weighted":
        # helpers.grid.minmax: a bag with constant scores gives zeros (no point stands out)
        inst = [float(p) * minmax(s) for s, p in zip(preds.inst_scores, preds.prob, strict=True)]
    else:
        raise ValueError(f"scores must be 'raw' or 'bag_weighted', not {scores!r}.")
    fractions = getattr(preds, "tumor_fraction", None)
    if preds.y_inst is None and fractions is None:
        raise ValueError(
            "FROC needs patch labels and these predictions have none (no patch_labels folder); "
            "make them with `python -m helpers.labels` (README step 3)."
        )
    return froc(
        inst,
        preds.y_inst,
        preds.grid_xy,
        fp_rates=fp_rates,
        tumor_fraction=fractions,
        patch_um=getattr(preds, "patch_um", None),
    )


def slide_detections_of(preds) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each slide's ``(lesion_scores, fp_scores)`` of a ``Predictions`` (raw scores, the
    rules of :func:`froc_from_predictions`): computed once, they make a FROC of any set of
    slides cheap (:func:`froc_of_detections`), e.g. in a bootstrap over slides."""
    n = len(preds.inst_scores)
    fractions = _per_slide(getattr(preds, "tumor_fraction", None), n, "tumor_fraction")
    sizes = _per_slide(getattr(preds, "patch_um", None), n, "patch_um")
    y_inst = preds.y_inst if preds.y_inst is not None else [None] * n
    out = []
    for s, y, cells, f, size in zip(
        preds.inst_scores, y_inst, preds.grid_xy, fractions, sizes, strict=True
    ):
        lesion_s, fp_s, _ = slide_detections(s, y, cells, tumor_fraction=f, patch_um=size)
        out.append((lesion_s, fp_s))
    return out


def froc_of_detections(
    detections: Sequence[tuple[np.ndarray, np.ndarray]], fp_rates: Sequence[float] = FP_RATES
) -> FROCResult:
    """The FROC of slides given by their ``(lesion_scores, fp_scores)`` (a slide may repeat)."""
    lesion_scores = np.concatenate([d[0] for d in detections])
    fp_scores = np.concatenate([d[1] for d in detections])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a draw without lesions: NaN, left out by the caller
        return _curve(lesion_scores, fp_scores, len(detections), tuple(float(r) for r in fp_rates))


def plot_froc(result: FROCResult, ax=None, label: str | None = None, **plot_kwargs):
    """Draw a FROC curve (sensitivity against FPs per slide, log x axis) and mark its rates.

    The line is the piecewise-linear curve the score reads (:func:`interpolate`; straight
    segments bend on the log axis), vertical where a threshold adds hits but no false positive.
    Returns the matplotlib ``Axes``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    rates = np.array(result.fp_rates, dtype=float)
    lo, hi = rates.min() / 2, rates.max() * 2
    fps, sens = result.fps_per_slide, result.sensitivity
    levels, first = np.unique(fps, return_index=True)
    inside = levels[(levels > lo) & (levels < hi)]
    x = np.unique(np.concatenate([np.geomspace(lo, hi, 256), inside, rates]))
    y = interpolate(fps, sens, x)
    # At each FP level inside the plot, the curve climbs from the level's lowest point.
    steps = np.searchsorted(x, inside)
    x = np.insert(x, steps, inside)
    y = np.insert(y, steps, sens[first[np.searchsorted(levels, inside)]])
    if label is not None and np.isfinite(result.score):
        label = f"{label} (FROC {result.score:.3f})"
    (line,) = ax.plot(x, y, label=label, **plot_kwargs)
    ax.plot(rates, [result.sensitivity_at[r] for r in result.fp_rates], "o", color=line.get_color())
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("average false positives per slide")
    ax.set_ylabel("lesion sensitivity")
    ax.grid(alpha=0.3)
    if label is not None:
        ax.legend(loc="lower right", fontsize="small")
    return ax
