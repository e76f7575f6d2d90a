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

Modules: :mod:`~helpers.froc.rules` (lesions, their grade, the predictions that hit them)
and :mod:`~helpers.froc.scoring` (the curve and the score); this package is the names' home.
"""

from helpers.froc.rules import (
    ITC_MAX_UM,
    MARGIN_UM,
    MICRO_MAX_UM,
    grade_slide,
    lesion_table,
    lesions,
    local_maxima,
    slide_detections,
)
from helpers.froc.scoring import (
    FP_RATES,
    FROCResult,
    froc,
    froc_from_predictions,
    froc_of_detections,
    interpolate,
    plot_froc,
    slide_detections_of,
)

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
