"""Lesion-level FROC (CAMELYON16's localization metric) on patch-grid heatmaps.

CAMELYON16 ranks localization by the free-response ROC: a detector outputs scored points,
a point inside a tumor region finds that lesion, a point outside every lesion is a false
positive, and the FROC score is the mean sensitivity at 1/4, 1/2, 1, 2, 4 and 8 false
positives per slide. Here everything lives on the patch grid of a slide: ``grid_xy``, the
``(x, y)`` cells level-0 corners // ``patch_size_level0`` (what ``TridentWSIDataset`` calls
``coords``, ``Predictions.grid_xy``). Nothing guesses the frame: level-0 pixels would read
as cells far apart, so convert them with :func:`helpers.grid.grid_xy` first:

- **lesions** are the connected components of tumor patches (``y_inst == 1``), with
  8-connectivity: patches that touch by an edge or a corner belong to the same lesion;
- **predictions** are the local maxima of the instance scores on the grid (see
  :func:`local_maxima` for the exact rule, plateaus included), each scored by its patch's
  score;
- a prediction on a lesion patch is a **hit** for that lesion. A lesion hit several times
  counts once, at the highest score among its hits; the other hits are neither true nor
  false positives (as in the challenge's ``Evaluation_FROC.py``). A prediction outside every
  lesion is a **false positive**.

One threshold is swept over the scores of all predictions of all slides (normal slides only
contribute false positives), so the scores must be on a common scale across slides: use a
score that does not depend on the rest of the bag (pre-softmax attention, an instance
logit or probability), not one normalised within each bag. At threshold ``t``::

    sensitivity(t)    = #lesions with a hit scoring >= t / #lesions
    FPs per slide(t)  = #false positives scoring >= t   / #slides

and the FROC score is the mean over the rates ``r`` in (1/4, 1/2, 1, 2, 4, 8) of the highest
sensitivity reached with at most ``r`` false positives per slide (0 if no threshold gets
there).

Differences from the challenge, which works on pixels: the challenge dilates each lesion by
75 um, leaves out isolated tumor cells (lesions shorter than 275 um; hits on them count
neither way) and interpolates linearly between operating points; here lesions are exactly
the tumor patches and the sensitivity at a rate is the best operating point at or below it.

Public API (shapes: ``N`` patches of one slide)::

    local_maxima(scores (N,), grid_xy (N, 2)) -> (N,) bool
    lesions(y_inst (N,), grid_xy (N, 2)) -> (N,) int   (0 = no lesion, 1..K)
    froc(scores, y_inst, grid_xy, fp_rates=FP_RATES) -> FROCResult  (lists: one per slide)
    froc_from_predictions(preds, scores="raw") -> FROCResult  (a helpers.evaluation.Predictions)
    plot_froc(result, ax=None, label=None) -> matplotlib Axes
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from helpers.grid import check_grid_xy, minmax

__all__ = [
    "FP_RATES",
    "FROCResult",
    "local_maxima",
    "lesions",
    "slide_detections",
    "froc",
    "froc_from_predictions",
    "plot_froc",
]

FP_RATES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)

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


def lesions(y_inst: np.ndarray, grid_xy: np.ndarray) -> np.ndarray:
    """Lesions of a slide: connected components of its tumor patches (8-connectivity).

    Two tumor patches belong to the same lesion when they touch by an edge or a corner on the
    patch grid (directly or through other tumor patches).

    Args:
        y_inst: ``(N,)`` patch labels, 0 (normal) or 1 (tumor).
        grid_xy: ``(N, 2)`` int patch-grid cells ``(x, y)``.

    Returns:
        ``(N,)`` int64: 0 for normal patches, else the lesion id ``1..K``, numbered in the
        order in which each lesion's first patch appears in the bag.
    """
    grid_xy = check_grid_xy(grid_xy)
    y = _check_labels(y_inst, len(grid_xy))
    if len(y) == 0:
        return np.zeros(0, dtype=np.int64)
    nb = _neighbours(grid_xy)
    comp = _components(nb, y == 1, np.ones(nb.shape, dtype=bool))
    return comp + 1  # -1 -> 0 (no lesion), 0..K-1 -> 1..K


def slide_detections(
    scores: np.ndarray, y_inst: np.ndarray, grid_xy: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Score one slide's predictions against its lesions.

    Returns ``(lesion_scores, fp_scores, n_points)``: ``lesion_scores`` ``(K,)`` holds, for
    each lesion, the highest score of a prediction that hits it (``-inf`` if none does),
    ``fp_scores`` the scores of the predictions outside every lesion, and ``n_points`` the
    number of predicted points (extra hits on an already-hit lesion included).
    """
    grid_xy = check_grid_xy(grid_xy)
    labels = lesions(y_inst, grid_xy)
    peaks = local_maxima(scores, grid_xy)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    n_lesions = int(labels.max()) if len(labels) else 0
    lesion_scores = np.full(n_lesions, -np.inf)
    hit = peaks & (labels > 0)
    np.maximum.at(lesion_scores, labels[hit] - 1, scores[hit])
    fp_scores = scores[peaks & (labels == 0)]
    return lesion_scores, fp_scores, int(peaks.sum())


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
        sensitivity_at: ``{rate: sensitivity}`` at each requested FP rate.
        score: mean of ``sensitivity_at`` (the FROC score; NaN when there are no lesions).
        n_lesions: number of lesions over all slides.
        n_slides: number of slides.
        n_predictions: number of predicted points (local maxima) over all slides.
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

    def __repr__(self) -> str:
        at = ", ".join(f"{r:g}: {s:.3f}" for r, s in self.sensitivity_at.items())
        return (
            f"FROCResult(score={self.score:.3f}, sensitivity_at={{{at}}}, "
            f"n_lesions={self.n_lesions}, n_slides={self.n_slides})"
        )


def froc(
    scores: Sequence[np.ndarray],
    y_inst: Sequence[np.ndarray],
    grid_xy: Sequence[np.ndarray],
    fp_rates: Sequence[float] = FP_RATES,
) -> FROCResult:
    """Lesion-level FROC over a set of slides (see the module docstring for the rules).

    Args:
        scores: one ``(N_i,)`` array of instance scores per slide, on a scale shared by all
            slides (raw attention or instance logits, not per-bag normalised values).
        y_inst: one ``(N_i,)`` array of patch labels (0/1) per slide.
        grid_xy: one ``(N_i, 2)`` int array of patch-grid cells ``(x, y)`` per slide
            (level-0 corners // ``patch_size_level0``; ``Predictions.grid_xy``).
        fp_rates: false positives per slide at which sensitivity is read (positive).

    Returns:
        A :class:`FROCResult`. With no lesion at all the sensitivities and the score are NaN
        (with a warning); the false-positive axis is still computed.
    """
    scores, y_inst, grid_xy = _check_slides(scores, y_inst, grid_xy)
    rates = tuple(float(r) for r in fp_rates)
    if not rates or any(not np.isfinite(r) or r <= 0 for r in rates):
        raise ValueError(f"fp_rates must be positive numbers, got {fp_rates}.")

    lesion_scores, fp_scores, n_points = [], [], 0
    for i, (s, y, cells) in enumerate(zip(scores, y_inst, grid_xy, strict=True)):
        where = f" of slide {i}"
        cells = check_grid_xy(cells, where=where)
        s = _check_scores(s, len(cells), where)
        y = _check_labels(y, len(cells), where)
        lesion_s, fp_s, n = slide_detections(s, y, cells)
        n_points += n
        lesion_scores.append(lesion_s)
        fp_scores.append(fp_s)
    result = _curve(np.concatenate(lesion_scores), np.concatenate(fp_scores), len(scores), rates)
    result.n_predictions = n_points
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
        at = {r: float(sens[fps <= r].max()) for r in rates}  # the +inf point has 0 FPs
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

    Args:
        preds: the output of ``helpers.evaluation.predict`` (``inst_scores``, ``y_inst``,
            ``grid_xy`` and ``prob`` are used).
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
    if preds.y_inst is None:
        raise ValueError(
            "FROC needs patch labels and these predictions have none (no patch_labels folder); "
            "make them with `python -m helpers.labels` (README step 3)."
        )
    return froc(inst, preds.y_inst, preds.grid_xy, fp_rates=fp_rates)


def plot_froc(result: FROCResult, ax=None, label: str | None = None, **plot_kwargs):
    """Draw a FROC curve (sensitivity against FPs per slide, log x axis) and mark its rates.

    Returns the matplotlib ``Axes``.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    rates = np.array(result.fp_rates, dtype=float)
    lo, hi = rates.min() / 2, rates.max() * 2
    # Step curve up to the largest rate shown: sensitivity only rises when FPs are allowed.
    x = np.clip(result.fps_per_slide, lo, None)
    if label is not None and np.isfinite(result.score):
        label = f"{label} (FROC {result.score:.3f})"
    (line,) = ax.step(
        np.append(x, hi),
        np.append(result.sensitivity, result.sensitivity[-1]),
        where="post",
        label=label,
        **plot_kwargs,
    )
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
