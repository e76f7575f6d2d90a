"""Lesion-level FROC on hand-made patch grids whose curves are worked out by hand."""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
from scipy import ndimage

from helpers.froc import FP_RATES, froc, froc_from_predictions, lesions, local_maxima, plot_froc

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
    # helpers.grid.minmax maps a constant bag to zeros: its point ranks at 0 whatever the
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
