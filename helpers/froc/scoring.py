"""The FROC curve and score (see :mod:`helpers.froc`): one threshold swept over the
predictions of all slides, the sensitivity read at the challenge's false-positive rates."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from helpers.froc.rules import slide_detections, slide_detections_with_itc
from helpers.scores import minmax

FP_RATES: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0)


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
    y_inst: Sequence[np.ndarray | None] | None,
    grid_xy: Sequence[np.ndarray],
    fp_rates: Sequence[float] = FP_RATES,
    *,
    tumor_fraction: Sequence[np.ndarray] | None = None,
    patch_um: float | Sequence[float | None] | None = None,
) -> FROCResult:
    """Lesion-level FROC over a set of slides (see the module docstring for the rules).

    Arguments:
        scores: one ``(N_i,)`` array of instance scores per slide, on a scale shared by all
            slides (raw attention or instance logits, not per-bag normalised values).
        y_inst: one ``(N_i,)`` array of patch labels (0/1) per slide; the tumour cells when
            ``tumor_fraction`` is None (else None is allowed here, or for a slide).
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
        lesion_s, fp_s, n, itc = slide_detections_with_itc(
            s, y, cells, tumor_fraction=f, patch_um=p, where=f" of slide {i}"
        )
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

    Arguments:
        preds: the output of ``helpers.evaluation.predict`` (``inst_scores``, ``y_inst``,
            ``grid_xy``, ``prob`` and, when present, ``tumor_fraction`` and ``patch_um``).
        scores: which instance scores rank the predictions across slides:
            ``"raw"`` the model's instance scores as they are (pre-softmax attention for
            ABMIL: a function of the patch alone, so comparable between slides);
            ``"bag_weighted"`` each bag's scores min-max scaled to [0, 1]
            (:func:`helpers.scores.minmax`: all 0 for a bag of equal scores) and multiplied by
            the bag's predicted probability, so that slides the model calls normal put
            their points at the bottom of the ranking.
        fp_rates: see :func:`froc`.
    """
    if scores == "raw":
        inst = [np.asarray(s, dtype=np.float64) for s in preds.inst_scores]
    elif scores == "bag_weighted":
        # helpers.scores.minmax: a bag with constant scores gives zeros (no point stands out)
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
