"""Lesion-level FROC on hand-made patch grids whose curves are worked out by hand."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from scipy import ndimage

from helpers.froc import (
    FP_RATES,
    ITC_MAX_UM,
    MICRO_MAX_UM,
    froc,
    froc_from_predictions,
    grade_slide,
    interpolate,
    lesion_table,
    lesions,
    local_maxima,
    plot_froc,
    slide_detections,
)

matplotlib.use("Agg")


def line(n: int) -> np.ndarray:
    """Grid coords of ``n`` patches in a row: (0, 0), (1, 0), ..., (n - 1, 0)."""
    return np.stack([np.arange(n), np.zeros(n, dtype=int)], axis=1)


def square(n: int) -> np.ndarray:
    """Grid coords of an ``n x n`` block, row by row."""
    ys, xs = np.mgrid[0:n, 0:n]
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def assert_curve(result, thresholds, fps, sens):
    np.testing.assert_allclose(result.thresholds, thresholds)
    np.testing.assert_allclose(result.fps_per_slide, fps)
    np.testing.assert_allclose(result.sensitivity, sens)


# ----------------------------------------------------------------------------- local maxima


def test_local_maxima_single_peaks_and_background_plateau():
    # Row: 0.9 0 0 0 0 0.5 0. The zeros at x=2,3 have no higher neighbour, but their plateau
    # touches x=1 (also 0, next to 0.9), so it leads up to 0.9 and is not a maximum.
    scores = np.array([0.9, 0, 0, 0, 0, 0.5, 0])
    assert local_maxima(scores, line(7)).tolist() == [1, 0, 0, 0, 0, 1, 0]


def test_local_maxima_uses_diagonal_neighbours():
    # 2 x 2 block; (1, 1) is a diagonal neighbour of (0, 0) and beats it.
    coords = np.array([[0, 0], [1, 0], [0, 1], [1, 1]])
    scores = np.array([0.5, 0.1, 0.2, 0.9])
    assert local_maxima(scores, coords).tolist() == [False, False, False, True]


def test_local_maxima_ignores_missing_cells():
    # Two patches with an empty cell between them are not neighbours: both are maxima.
    coords = np.array([[0, 0], [2, 0]])
    assert local_maxima(np.array([0.1, 0.9]), coords).tolist() == [True, True]


def test_local_maxima_plateau_gives_one_point_in_raster_order():
    # (1, 0) and (0, 1) tie at 0.7 and touch diagonally: one plateau, one point, at the
    # patch with the smallest y, i.e. (1, 0), even though it comes second in the bag.
    coords = np.array([[0, 1], [1, 0], [3, 3]])
    scores = np.array([0.7, 0.7, 0.1])
    assert local_maxima(scores, coords).tolist() == [False, True, True]
    # A constant heatmap on one piece of tissue: exactly one point, the first in raster order.
    flat = local_maxima(np.zeros(9), square(3)[::-1])
    assert flat.sum() == 1 and flat[-1]


def test_local_maxima_plateau_leading_higher_is_not_a_maximum():
    # 0.3 0.3 0.9: x=0 has no higher neighbour, but its plateau continues to x=1, which has.
    assert local_maxima(np.array([0.3, 0.3, 0.9]), line(3)).tolist() == [False, False, True]


def test_local_maxima_matches_brute_force_without_ties():
    rng = np.random.default_rng(0)
    present = rng.random((12, 15)) < 0.7
    ys, xs = np.nonzero(present)
    coords = np.stack([xs, ys], axis=1)
    scores = rng.random(len(coords))
    grid = np.full(present.shape, -np.inf)
    grid[ys, xs] = scores
    padded = np.pad(grid, 1, constant_values=-np.inf)
    expected = []
    for x, y, s in zip(xs, ys, scores, strict=True):
        window = padded[y : y + 3, x : x + 3].copy()
        window[1, 1] = -np.inf
        expected.append(s > window.max())
    got = local_maxima(scores, coords)
    assert got.tolist() == expected
    assert 5 < got.sum() < len(coords)


# ----------------------------------------------------------------------------- lesions


def test_lesions_diagonal_connectivity():
    # Tumor on the diagonal of a 3 x 3 block: corners touch, so one lesion.
    coords = square(3)
    y = np.zeros(9, dtype=int)
    y[[0, 4, 8]] = 1  # (0,0), (1,1), (2,2)
    assert lesions(y, coords).tolist() == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    # Tumor at x=0 and x=2 of a row, normal at x=1: two lesions, numbered in bag order.
    assert lesions(np.array([1, 0, 1]), line(3)).tolist() == [1, 0, 2]
    # ... and a missing cell does not join them either.
    assert lesions(np.array([1, 1]), np.array([[0, 0], [2, 0]])).tolist() == [1, 2]


def test_lesions_match_scipy_fill_holes_and_label_with_8_connectivity():
    rng = np.random.default_rng(1)
    tumor = rng.random((20, 20)) < 0.35
    ys, xs = np.mgrid[0:20, 0:20]
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1)
    got = lesions(tumor.ravel().astype(int), coords)
    # holes enclosed by tumour belong to the lesion, as in the challenge's evaluation mask
    filled = ndimage.binary_fill_holes(tumor)
    assert (filled & ~tumor).any()  # the example has holes
    ref, k = ndimage.label(filled, structure=np.ones((3, 3)))
    ref = ref.ravel()
    assert got.max() == k > 3
    # Same partition: a one-to-one map between our ids and scipy's.
    pairs = set(zip(got[got > 0], ref[ref > 0], strict=True))
    assert len(pairs) == k
    assert ((got > 0) == (ref > 0)).all()


# ----------------------------------------------------------------------------- FROC


def test_perfect_detector():
    # Tumor slide: 5 x 5, lesion = the 2 x 2 block at x, y in {1, 2}, scored 1.0, rest 0.0.
    # The lesion is one plateau -> one point (score 1), a hit. The zeros form a plateau that
    # borders the lesion -> not a maximum. Normal slide: all 0.0 -> one point, an FP at 0.
    coords = square(5)
    y = (coords[:, 0] >= 1) & (coords[:, 0] <= 2) & (coords[:, 1] >= 1) & (coords[:, 1] <= 2)
    y = y.astype(int)
    result = froc([y.astype(float), np.zeros(9)], [y, np.zeros(9, dtype=int)], [coords, square(3)])
    # Thresholds inf, 1, 0: FPs 0, 0, 1/2 per slide; sensitivity 0, 1, 1.
    assert_curve(result, [np.inf, 1.0, 0.0], [0, 0, 0.5], [0, 1, 1])
    assert result.sensitivity_at == dict.fromkeys(FP_RATES, 1.0)
    assert result.score == 1.0
    assert (result.n_lesions, result.n_slides, result.n_predictions) == (1, 2, 2)


def test_one_fp_per_slide_ranked_above_the_lesions():
    # Two tumor slides, each a row of 7: an FP peak at x=0 above the lesion peak at x=5.
    # Slide A: FP 0.9, lesion 0.5. Slide B: FP 0.8, lesion 0.4.
    y = np.array([0, 0, 0, 0, 0, 1, 0])
    a = np.array([0.9, 0, 0, 0, 0, 0.5, 0])
    b = np.array([0.8, 0, 0, 0, 0, 0.4, 0])
    result = froc([a, b], [y, y], [line(7), line(7)])
    # t=0.9: 1 FP / 2 slides = 0.5, 0 lesions; t=0.8: 1.0 FPs, 0; t=0.5: 1.0, 1/2; t=0.4: 1.0, 1.
    assert_curve(result, [np.inf, 0.9, 0.8, 0.5, 0.4], [0, 0.5, 1, 1, 1], [0, 0, 0, 0.5, 1])
    # Rates 1/4 and 1/2 allow no lesion; from 1 FP per slide on, both lesions are found.
    assert result.sensitivity_at == {0.25: 0, 0.5: 0, 1.0: 1, 2.0: 1, 4.0: 1, 8.0: 1}
    assert result.score == pytest.approx(4 / 6)


def test_normal_slides_add_false_positives_and_count_as_slides():
    # One tumor slide whose lesion (0.5) is its only point, plus three normal slides, each
    # with a single patch scored 0.9 (an FP above the lesion).
    tumor = (np.array([0.5, 0.0, 0.0]), np.array([1, 0, 0]), line(3))
    normal = (np.array([0.9]), np.array([0]), line(1))
    result = froc(*zip(tumor, normal, normal, normal, strict=True))
    # t=0.9: 3 FPs / 4 slides = 0.75, sens 0; t=0.5: 0.75, sens 1.
    assert_curve(result, [np.inf, 0.9, 0.5], [0, 0.75, 0.75], [0, 0, 1])
    assert result.sensitivity_at == {0.25: 0, 0.5: 0, 1.0: 1, 2.0: 1, 4.0: 1, 8.0: 1}
    assert result.score == pytest.approx(4 / 6)


def test_two_lesions_only_one_found():
    # Row of 9: lesion 1 = x 0-1 (scores 0.8, 0.6), lesion 2 = x 7 (score 0, like its
    # surroundings; that zero plateau leads up to 0.6, so no point there).
    y = np.array([1, 1, 0, 0, 0, 0, 0, 1, 0])
    s = np.array([0.8, 0.6, 0, 0, 0, 0, 0, 0, 0])
    assert lesions(y, line(9)).tolist() == [1, 1, 0, 0, 0, 0, 0, 2, 0]
    result = froc([s], [y], [line(9)])
    # One point (0.8), a hit: sensitivity 1/2 at 0 FPs, never more.
    assert_curve(result, [np.inf, 0.8], [0, 0], [0, 0.5])
    assert result.sensitivity_at == dict.fromkeys(FP_RATES, 0.5)
    assert result.score == 0.5 and result.n_lesions == 2


def test_diagonal_lesion_is_one_lesion_in_froc():
    # Diagonal tumor on a 3 x 3 block is one lesion; a point on any of its patches finds it.
    coords = square(3)
    y = np.zeros(9, dtype=int)
    y[[0, 4, 8]] = 1
    s = np.zeros(9)
    s[8] = 0.7  # (2, 2): the only peak
    result = froc([s], [y], [coords])
    assert result.n_lesions == 1 and result.score == 1.0


def test_lesion_hit_twice_counts_once_and_extra_hits_are_not_fps():
    # Row: lesion on x 0-4 with peaks 0.9, 0.8 and 0.7 (x = 0, 2, 4); background 0 on x 5-7.
    y = np.array([1, 1, 1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.1, 0.8, 0.1, 0.7, 0, 0, 0])
    assert local_maxima(s, line(8)).sum() == 3
    result = froc([s], [y], [line(8)])
    # One lesion, found at 0.9; the hits at 0.8 and 0.7 are neither TP nor FP, so they are
    # not even operating points.
    assert_curve(result, [np.inf, 0.9], [0, 0], [0, 1])
    assert result.score == 1.0
    assert (result.n_lesions, result.n_predictions) == (1, 3)


def test_ties_between_a_false_positive_and_a_hit():
    # Slide 1 (normal): one point at 0.5 (FP). Slide 2: one lesion, its point also at 0.5.
    # One threshold takes both: no operating point finds the lesion without the FP.
    result = froc(
        [np.array([0.5]), np.array([0.5, 0.0])],
        [np.array([0]), np.array([1, 0])],
        [line(1), line(2)],
    )
    # t=0.5: 1 FP / 2 slides = 0.5, sensitivity 1.
    assert_curve(result, [np.inf, 0.5], [0, 0.5], [0, 1])
    # The challenge interpolates linearly between (0, 0) and (0.5, 1): 0.5 at 1/4 FP.
    assert result.sensitivity_at == {0.25: 0.5, 0.5: 1, 1.0: 1, 2.0: 1, 4.0: 1, 8.0: 1}
    assert result.score == pytest.approx(5.5 / 6)


def test_all_normal_slides_give_nan_sensitivity_but_an_fp_axis():
    # Slide 1: row 0.2 0.9 0.1 -> one point (0.9). Slide 2: a single patch 0.5 -> one point.
    with pytest.warns(UserWarning, match="No lesion"):
        result = froc(
            [np.array([0.2, 0.9, 0.1]), np.array([0.5])],
            [np.zeros(3, dtype=int), np.zeros(1, dtype=int)],
            [line(3), line(1)],
        )
    np.testing.assert_allclose(result.fps_per_slide, [0, 0.5, 1.0])
    assert np.isnan(result.sensitivity).all() and np.isnan(result.score)
    assert result.n_lesions == 0 and result.n_slides == 2


def test_custom_fp_rates():
    y = np.array([0, 0, 0, 0, 0, 1, 0])
    s = np.array([0.9, 0, 0, 0, 0, 0.5, 0])
    result = froc([s], [y], [line(7)], fp_rates=(0.5, 1))
    assert result.sensitivity_at == {0.5: 0.0, 1.0: 1.0} and result.score == 0.5


def test_accepts_float_labels_column_vectors_and_float_integer_coords():
    y = np.array([[1.0], [0.0], [0.0]])
    result = froc([np.array([0.9, 0.1, 0.0])], [y], [line(3).astype(float)])
    assert result.score == 1.0


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "scores, y_inst, coords, message",
    [
        ([], [], [], "at least one slide"),
        ([np.zeros(3)], [np.zeros(3), np.zeros(3)], [line(3)], "one array per slide"),
        ([np.zeros(3)], [np.zeros(3)], [line(3), line(3)], "one array per slide"),
        ([np.zeros(2)], [np.zeros(3)], [line(3)], "scores of slide 0 has 2 values"),
        ([np.zeros(3)], [np.zeros(4)], [line(3)], "y_inst of slide 0 has 4 values"),
        ([np.zeros(3)], [np.zeros(3)], [line(3) + 0.5], "whole numbers \\(grid cells"),
        ([np.zeros(3)], [np.zeros(3)], [np.zeros((3, 3), dtype=int)], r"shape \(N, 2\)"),
        ([np.zeros(2)], [np.zeros(2)], [np.array([[0, 0], [0, 0]])], "duplicate"),
        ([np.array([0.1, np.nan])], [np.zeros(2)], [line(2)], "NaN"),
        ([np.zeros(2)], [np.array([0, 2])], [line(2)], "0 \\(normal\\) and 1"),
    ],
)
def test_bad_input_raises(scores, y_inst, coords, message):
    with pytest.raises(ValueError, match=message):
        froc(scores, y_inst, coords)


def test_bad_fp_rates_and_single_array():
    with pytest.raises(ValueError, match="fp_rates"):
        froc([np.zeros(1)], [np.ones(1)], [line(1)], fp_rates=(0, 1))
    with pytest.raises(TypeError, match="one array per slide"):
        froc(np.zeros(3), [np.zeros(3)], [line(3)])


def test_grid_xy_taken_as_given_no_frame_guessing():
    # level-0 pixels are not recognised: 1024 apart, the three tumour patches are three lesions
    assert lesions(np.array([1, 1, 1]), line(3) * 1024).tolist() == [1, 2, 3]
    assert lesions(np.array([1, 1, 1]), line(3)).tolist() == [1, 1, 1]


# ----------------------------------------------------------------------------- helpers


def preds_like(inst_scores, y_inst, grid_xy, prob):
    return SimpleNamespace(inst_scores=inst_scores, y_inst=y_inst, grid_xy=grid_xy, prob=prob)


def test_froc_from_predictions_raw_and_bag_weighted():
    # Tumor slide: lesion point 2.0 (raw). Normal slide: a point at 5.0 (raw), above it.
    preds = preds_like(
        [np.array([2.0, 0.0, 0.0]), np.array([5.0, 1.0])],
        [np.array([1, 0, 0]), np.array([0, 0])],
        [line(3), line(2)],
        np.array([0.9, 0.2]),
    )
    raw = froc_from_predictions(preds)
    # raw: t=5: 1 FP / 2 slides = 0.5, sens 0; t=2: still 0.5 FPs, sens 1. Only the rate
    # 1/4 misses the lesion -> (0 + 5 * 1) / 6.
    assert_curve(raw, [np.inf, 5.0, 2.0], [0, 0.5, 0.5], [0, 0, 1])
    assert raw.score == pytest.approx(5 / 6)
    # bag_weighted: min-max then times the bag probability: lesion 1 * 0.9 = 0.9, the
    # normal slide's point 1 * 0.2 = 0.2. The lesion now ranks first -> 1.0.
    weighted = froc_from_predictions(preds, scores="bag_weighted")
    np.testing.assert_allclose(weighted.thresholds, [np.inf, 0.9, 0.2])
    assert weighted.score == 1.0
    with pytest.raises(ValueError, match="raw"):
        froc_from_predictions(preds, scores="softmax")


def test_plot_froc_draws_a_curve_and_the_rates():
    y = np.array([0, 0, 0, 0, 0, 1, 0])
    result = froc([np.array([0.9, 0, 0, 0, 0, 0.5, 0])], [y], [line(7)])
    ax = plot_froc(result, label="model")
    curve, points = ax.get_lines()
    assert len(points.get_xdata()) == len(FP_RATES)
    np.testing.assert_allclose(points.get_ydata(), [0, 0, 1, 1, 1, 1])
    assert "FROC 0.667" in ax.get_legend().get_texts()[0].get_text()


def test_bag_weighted_constant_bag_scores_zero():
    # helpers.scores.minmax maps a constant bag to zeros: its point ranks at 0 whatever the
    # bag probability (it used to be ones, i.e. the bag probability itself)
    preds = preds_like(
        [np.array([3.0, 3.0]), np.array([2.0, 0.0])],
        [np.array([1, 1]), np.array([0, 0])],
        [line(2), line(2)],
        np.array([0.9, 0.5]),
    )
    weighted = froc_from_predictions(preds, scores="bag_weighted")
    np.testing.assert_allclose(weighted.thresholds, [np.inf, 0.5, 0.0])
    assert weighted.n_lesions == 1


def test_plot_froc_draws_the_interpolated_curve_not_a_step():
    # One FP and one hit tied at 0.5 over two slides: the curve climbs linearly from (0, 0)
    # to (0.5, 1), so it reads 0.5 at 1/4 FP per slide, where a step would read 0.
    result = froc(
        [np.array([0.5]), np.array([0.5, 0.0])],
        [np.array([0]), np.array([1, 0])],
        [line(1), line(2)],
    )
    curve, points = plot_froc(result).get_lines()
    x, y = curve.get_xdata(), curve.get_ydata()
    for rate in FP_RATES:
        assert y[np.flatnonzero(x == rate)[-1]] == pytest.approx(result.sensitivity_at[rate])
    assert result.sensitivity_at[0.25] == 0.5


# ----------------------------------------------------------------------------- official rules
#
# A faithful re-implementation of CAMELYON16's Evaluation_FROC.py (computeEvaluationMask,
# computeITCList, compute_FP_TP_Probs, computeFROC, and the score by np.interp) on a pixel
# mask, to check the grid rules against it.

PX_UM = 2.5  # microns per mask pixel
CELL_PX = 10  # mask pixels per patch side
P_UM = PX_UM * CELL_PX  # 25 um patches: the 37.5 um margin reaches the next cell


def official_evaluation_mask(mask: np.ndarray) -> np.ndarray:
    distance = ndimage.distance_transform_edt(~mask)  # distance to the nearest tumour pixel
    binary = distance < 75 / (PX_UM * 2)
    filled = ndimage.binary_fill_holes(binary)
    labels, _ = ndimage.label(filled, structure=np.ones((3, 3)))  # connectivity=2
    return labels


def major_axis_length(region: np.ndarray) -> float:
    """skimage's regionprops major_axis_length: 4 sqrt(largest eigenvalue of the inertia
    tensor), i.e. of the covariance of the region's pixel coordinates."""
    rows, cols = np.nonzero(region)
    cov = np.cov(np.stack([rows, cols]).astype(float), bias=True)
    return 4 * np.sqrt(np.linalg.eigvalsh(cov).max())


def official_itc(labels: np.ndarray) -> list[int]:
    return [i for i in range(1, labels.max() + 1) if major_axis_length(labels == i) < 275 / PX_UM]


def official_fp_tp(points, is_tumor, labels, itc):
    """points: [(prob, x_px, y_px)]."""
    max_label = int(labels.max()) if is_tumor else 0
    fp, tp = [], np.zeros(max_label)
    for prob, x, y in points:
        hit = labels[y, x] if is_tumor else 0
        if hit == 0:
            fp.append(prob)
        elif hit not in itc and prob > tp[hit - 1]:
            tp[hit - 1] = prob
    return fp, list(tp), max_label - len(itc)


def official_froc(slides, rates=FP_RATES):
    """slides: [(fp, tp, n_tumors)] -> (sensitivity at each rate, n_tumors)."""
    fps_all = [v for fp, _, _ in slides for v in fp]
    tps_all = [v for _, tp, _ in slides for v in tp]
    total_fps, total_tps = [], []
    for thresh in sorted(set(fps_all + tps_all))[1:]:
        total_fps.append((np.asarray(fps_all) >= thresh).sum())
        total_tps.append((np.asarray(tps_all) >= thresh).sum())
    total_fps.append(0)
    total_tps.append(0)
    n_tumors = sum(n for _, _, n in slides)
    fps = np.asarray(total_fps) / len(slides)
    sens = np.asarray(total_tps) / n_tumors
    return np.interp(rates, fps[::-1], sens[::-1]), n_tumors


def disc_mask(shape_px, discs_um) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape_px[0], 0 : shape_px[1]]
    y_um, x_um = (rows + 0.5) * PX_UM, (cols + 0.5) * PX_UM
    mask = np.zeros(shape_px, dtype=bool)
    for cx, cy, r in discs_um:
        mask |= (x_um - cx) ** 2 + (y_um - cy) ** 2 <= r**2
    return mask


def grid_of(mask: np.ndarray):
    """Every cell of the mask as a patch: grid_xy (x, y) and tumour fractions."""
    h, w = mask.shape[0] // CELL_PX, mask.shape[1] // CELL_PX
    frac = mask.reshape(h, CELL_PX, w, CELL_PX).mean((1, 3))
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs.ravel(), ys.ravel()], axis=1), frac.ravel()


def scores_with_peaks(cells, peaks: dict) -> np.ndarray:
    """Scores 0 everywhere but at ``peaks`` {(x, y): score}: exactly those cells are maxima."""
    scores = np.zeros(len(cells))
    index = {tuple(c): i for i, c in enumerate(cells.tolist())}
    for cell, score in peaks.items():
        scores[index[cell]] = score
    return scores


def test_grid_froc_matches_the_official_evaluation_on_a_worked_example():
    shape = (1000, 1000)  # 2.5 mm square, 100 x 100 patches of 25 um
    tumour = disc_mask(
        shape,
        [
            (600, 600, 300),  # large lesion
            (2000, 400, 40),  # ITC: 80 um across (155 um with the 75 um margin)
            (600, 1800, 70),  # two blobs 40 um apart: each alone would be ITC-sized,
            (780, 1800, 70),  # together one 320 um lesion
            (1900, 1500, 120),  # isolated lesion, found by a point in its margin
            (1700, 2200, 150),  # missed
        ],
    )
    normal = np.zeros(shape, dtype=bool)
    tumour_peaks = {
        (23, 23): 0.9,  # large lesion
        (30, 23): 0.6,  # large lesion again: not an operating point
        (79, 15): 0.95,  # on the ITC: ignored
        (23, 71): 0.8,  # first blob: a hit tied with the false positive below
        (60, 10): 0.8,  # false positive
        (81, 60): 0.5,  # 18 um outside the isolated lesion: in its margin
        (10, 95): 0.3,  # false positive
    }
    normal_peaks = {(10, 10): 0.4, (50, 50): 0.2}

    # The official evaluation on the pixel masks, points at the patch centres.
    official = []
    for mask, peaks, is_tumor in ((tumour, tumour_peaks, True), (normal, normal_peaks, False)):
        labels = official_evaluation_mask(mask)
        itc = official_itc(labels) if is_tumor else []
        points = [
            (s, x * CELL_PX + CELL_PX // 2, y * CELL_PX + CELL_PX // 2)
            for (x, y), s in peaks.items()
        ]
        official.append(official_fp_tp(points, is_tumor, labels, itc))
        if is_tumor:
            assert labels.max() == 5 and len(itc) == 1  # the blobs merged; one ITC
    official_at, n_tumors = official_froc(official)
    assert n_tumors == 4

    # The same on the patch grid.
    cells, frac = grid_of(tumour)
    assert frac[81 + 60 * 100] == 0 and frac[80 + 60 * 100] > 0  # the margin point's cell
    normal_cells, normal_frac = grid_of(normal)
    scores = [scores_with_peaks(cells, tumour_peaks), scores_with_peaks(normal_cells, normal_peaks)]
    result = froc(
        scores,
        [(frac > 0.5).astype(int), np.zeros(len(normal_cells), dtype=int)],
        [cells, normal_cells],
        tumor_fraction=[frac, normal_frac],
        patch_um=P_UM,
    )
    assert (result.n_lesions, result.n_itc, result.n_slides) == (4, 1, 2)
    assert result.n_predictions == len(tumour_peaks) + len(normal_peaks)
    # Hits and false positives slide by slide, as the official lists.
    for (fp, tp, _), s, c, f in zip(
        official, scores, [cells, normal_cells], [frac, normal_frac], strict=True
    ):
        lesion_s, fp_s, _ = slide_detections(s, None, c, tumor_fraction=f, patch_um=P_UM)
        assert sorted(fp_s) == sorted(fp)
        assert sorted(lesion_s[np.isfinite(lesion_s)]) == sorted(v for v in tp if v > 0)
    # t=0.9: (0, 1/4); t=0.8: one FP and one hit, (1/2, 2/4); t=0.5: (1/2, 3/4); then FPs.
    # 1/4 FP per slide lies halfway along the line from (0, 1/4) to (1/2, 2/4): 3/8.
    expected = [0.375, 0.75, 0.75, 0.75, 0.75, 0.75]
    np.testing.assert_allclose(official_at, expected)
    np.testing.assert_allclose([result.sensitivity_at[r] for r in FP_RATES], expected)
    assert result.score == pytest.approx(np.mean(official_at))
    # The lesions: large, ITC, merged blobs, isolated, missed (in bag order: by first row).
    table = lesion_table(None, cells, tumor_fraction=frac, patch_um=P_UM)
    assert len(table) == 5 and table["itc"].sum() == 1
    itc_row = table[table["itc"]].iloc[0]
    assert itc_row["extent_um"] < ITC_MAX_UM
    labels = lesions(None, cells, tumor_fraction=frac, patch_um=P_UM)
    blob_a, blob_b = labels[23 + 72 * 100], labels[31 + 72 * 100]
    assert blob_a == blob_b > 0
    assert table.set_index("lesion").loc[blob_a, "extent_um"] > ITC_MAX_UM


def test_point_in_the_margin_of_a_lesion_is_a_hit():
    # A row of 25 um patches: tumour on x = 0..9 (250 um, not ITC), none from x = 10 on.
    # The point at x = 10 (fraction 0) has its centre 12.5 um from the tumour: a hit.
    frac = np.r_[np.ones(10), np.zeros(6)]
    s = np.zeros(16)
    s[10] = 0.9
    hit = froc([s], [frac.astype(int)], [line(16)], tumor_fraction=[frac], patch_um=25.0)
    assert (hit.n_lesions, hit.score, len(hit.fps_per_slide)) == (1, 1.0, 2)
    assert hit.fps_per_slide.max() == 0
    # x = 11 is 37.5 um away: not closer than 37.5 um, so outside (and with 100 um patches,
    # x = 10 is 50 um away: outside too).
    assert (
        lesions(None, line(16), tumor_fraction=frac, patch_um=25.0).tolist() == [1] * 11 + [0] * 5
    )
    assert (
        lesions(None, line(16), tumor_fraction=frac, patch_um=100.0).tolist() == [1] * 10 + [0] * 6
    )
    # Without a patch size there is no margin: the point is a false positive, the lesion missed.
    miss = froc([s], [frac.astype(int)], [line(16)], tumor_fraction=[frac])
    assert miss.score == 0.0 and miss.fps_per_slide[-1] == 1.0


def test_point_on_an_itc_lesion_is_neither_hit_nor_false_positive():
    # 100 um patches on a 10 x 10 block: a 3 x 3 lesion of whole patches (300 um) at the
    # top left, and one patch half tumour at (7, 7) (area-equivalent diameter 80 um: ITC).
    cells = square(10)
    frac = np.zeros(100)
    frac[[x + 10 * y for x in range(3) for y in range(3)]] = 1.0
    frac[7 + 10 * 7] = 0.5
    s = np.zeros(100)
    s[1 + 10 * 1] = 0.5  # on the large lesion
    s[7 + 10 * 7] = 0.95  # on the ITC, above it
    result = froc([s], [(frac > 0.5).astype(int)], [cells], tumor_fraction=[frac], patch_um=100.0)
    assert (result.n_lesions, result.n_itc, result.n_predictions) == (1, 1, 2)
    assert_curve(result, [np.inf, 0.5], [0, 0], [0, 1])
    assert result.score == 1.0
    table = lesion_table(None, cells, tumor_fraction=frac, patch_um=100.0)
    assert table["itc"].tolist() == [False, True]
    # the block: corner patch centres 200 sqrt(2) um apart, plus half a patch at each end;
    # the half patch: its area-equivalent diameter
    np.testing.assert_allclose(
        table["extent_um"], [200 * np.sqrt(2) + 100, 2 * np.sqrt(5000 / np.pi)]
    )
    # Without a patch size, no ITC rule: the point finds a second lesion.
    plain = froc([s], [(frac > 0.5).astype(int)], [cells], tumor_fraction=[frac])
    assert (plain.n_lesions, plain.n_itc) == (2, 0)


def test_point_on_a_partly_tumour_patch_hits_the_neighbouring_lesion():
    # x = 0 is 80 % tumour (y_inst 1), x = 1 is 30 % (y_inst 0); the peak is on x = 1.
    y = np.array([1, 0, 0, 0, 0])
    frac = np.array([0.8, 0.3, 0, 0, 0])
    s = np.array([0.1, 0.9, 0, 0, 0])
    with_fractions = froc([s], [y], [line(5)], tumor_fraction=[frac])
    assert with_fractions.score == 1.0 and with_fractions.fps_per_slide[-1] == 0
    # From y_inst alone the same point is a false positive and the lesion is missed.
    labels_only = froc([s], [y], [line(5)])
    assert labels_only.score == 0.0 and labels_only.fps_per_slide[-1] == 1


def test_interpolation_matches_hand_computed_values_and_np_interp():
    # Operating points in order of decreasing threshold, with repeated FP levels.
    fps = np.array([0, 0, 0.5, 0.5, 1.0, 1.0, 3.0])
    sens = np.array([0, 0.2, 0.2, 0.6, 0.6, 0.8, 1.0])
    x = np.array([0, 0.25, 0.5, 0.75, 1.0, 2.0, 3.0, 8.0])
    # 0.25: from (0, 0.2) to (0.5, 0.2): 0.2. 0.5: the level's highest, 0.6. 0.75: from
    # (0.5, 0.6) to (1, 0.6). 2: from (1, 0.8) to (3, 1): 0.9. Beyond 3: the last, 1.
    expected = [0.2, 0.2, 0.6, 0.6, 0.8, 0.9, 1.0, 1.0]
    np.testing.assert_allclose(interpolate(fps, sens, x), expected)
    np.testing.assert_allclose(np.interp(x, fps, sens), expected)
    # A threshold that adds a hit and a false positive at once gives a sloped segment.
    np.testing.assert_allclose(interpolate([0, 1], [0.5, 1.0], [0.25, 0.5]), [0.625, 0.75])
    # Through froc, 3 slides: a normal one with an FP at 0.9, a lesion found at 0.7, and a
    # lesion found at 0.4 on a slide that also has an FP at 0.4.
    result = froc(
        [np.array([0.9]), np.array([0.7, 0.0]), np.array([0.4, 0.0, 0.0, 0.4])],
        [np.array([0]), np.array([1, 0]), np.array([1, 0, 0, 0])],
        [line(1), line(2), line(4)],
    )
    # t=0.9: (1/3, 0); t=0.7: (1/3, 1/2); t=0.4: (2/3, 1). At 1/4: 3/4 of the way from
    # (0, 0) to (1/3, 0): 0. At 1/2: halfway from (1/3, 1/2) to (2/3, 1): 3/4.
    assert_curve(result, [np.inf, 0.9, 0.7, 0.4], [0, 1 / 3, 1 / 3, 2 / 3], [0, 0, 0.5, 1])
    np.testing.assert_allclose([result.sensitivity_at[r] for r in FP_RATES], [0, 0.75, 1, 1, 1, 1])
    assert result.score == pytest.approx(4.75 / 6)


def test_grade_slide_thresholds():
    assert (ITC_MAX_UM, MICRO_MAX_UM) == (200.0, 2000.0)
    row = lambda n: np.ones(n)  # noqa: E731  (n whole tumour patches in a row)
    grade = lambda frac, p=100.0, label=1: grade_slide(  # noqa: E731
        label, None, line(len(frac)), tumor_fraction=np.asarray(frac, dtype=float), patch_um=p
    )
    assert grade(row(30), label=0) == "normal"
    assert grade(np.zeros(5)) == "ITC"  # a tumour slide with no tumour on the grid
    assert grade([0.5]) == "ITC"  # 80 um
    assert grade(row(1)) == "ITC"  # 113 um: area-equivalent diameter of a 100 um square
    assert grade(row(2)) == "micro"  # 200 um: not under 0.2 mm
    assert grade(row(20)) == "micro"  # 2 mm
    assert grade(row(21)) == "macro"
    # A sliver of tumour across a patch border (7 % and 0.3 % of two 256 um patches) is
    # not a 0.26 mm lesion.
    assert grade([0.072, 0.003], p=256.0) == "ITC"
    # The largest lesion decides: one ITC-sized and one micro lesion.
    assert grade(np.r_[0.5, np.zeros(5), row(5)]) == "micro"
    # y_inst alone: each tumour patch counted whole.
    assert grade_slide(1, np.array([1, 1, 1]), line(3), patch_um=100.0) == "micro"


def test_froc_from_predictions_uses_fractions_and_patch_size_when_present():
    # The margin case of test_point_in_the_margin_of_a_lesion_is_a_hit, through Predictions.
    frac = np.r_[np.ones(10), np.zeros(6)]
    s = np.zeros(16)
    s[10] = 0.9
    preds = preds_like([s], [frac.astype(int)], [line(16)], np.array([0.9]))
    assert froc_from_predictions(preds).score == 0.0  # no fractions, no patch size
    preds.tumor_fraction, preds.patch_um = [frac], [25.0]
    assert froc_from_predictions(preds).score == 1.0
