"""helpers.bootstrap: stratified slide draws and paired bootstrap intervals of differences."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from helpers.bootstrap import bootstrap_differences, resample_slides


def test_draws_keep_each_class_in_its_place():
    y = np.array([0, 1, 0, 0, 1, 1, 0])
    draws = resample_slides(y, n_boot=200, seed=3)
    assert draws.shape == (200, 7)
    assert (y[draws] == y[None, :]).all()  # a tumour slide is replaced by a tumour slide
    assert len(np.unique(draws)) == 7  # every slide is drawn somewhere
    assert (resample_slides(y, 200, seed=3) == draws).all()  # the seed fixes the draws
    assert not (resample_slides(y, 200, seed=4) == draws).all()


def test_bad_arguments():
    with pytest.raises(ValueError):
        resample_slides(np.array([0, 1]), n_boot=0)
    with pytest.raises(KeyError):
        bootstrap_differences({"a": [1]}, lambda r, i: 0.0, "b", np.zeros((2, 2), int))


def _auroc(run, idx):
    y, prob = run
    return roc_auc_score(y[idx], prob[idx])


def test_a_copy_of_the_reference_differs_by_exactly_zero():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 15)
    runs = [(y, rng.random(30) + y * 0.5) for _ in range(3)]
    table = bootstrap_differences(
        {"ref": runs, "copy": list(runs)}, _auroc, "ref", resample_slides(y, 100)
    )
    assert list(table.index) == ["copy"]
    assert table.loc["copy"].tolist() == [0.0, 0.0, 0.0]


@pytest.mark.slow
def test_pairing_narrows_the_interval_and_a_real_gap_excludes_zero():
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1], 20)
    hard = rng.normal(0, 1, 40)  # slide difficulty shared by both models
    ref = [(y, hard + 1.0 * y + rng.normal(0, 0.3, 40)) for _ in range(3)]
    better = [(y, hard + 2.5 * y + rng.normal(0, 0.3, 40)) for _ in range(3)]
    draws = resample_slides(y, 400, seed=0)
    table = bootstrap_differences({"ref": ref, "better": better}, _auroc, "ref", draws)
    row = table.loc["better"]
    assert row["low"] <= row["difference"] <= row["high"]
    assert row["low"] > 0, row  # a large true gap: the interval stays above zero
    # unpaired: the two models on independent draws give a wider interval
    other = resample_slides(y, 400, seed=1)
    unpaired = [
        np.mean([_auroc(r, i) for r in better]) - np.mean([_auroc(r, j) for r in ref])
        for i, j in zip(draws, other, strict=True)
    ]
    paired_width = row["high"] - row["low"]
    unpaired_width = np.subtract(*np.percentile(unpaired, [97.5, 2.5]))
    assert paired_width < unpaired_width, (paired_width, unpaired_width)


@pytest.mark.slow
def test_no_true_difference_usually_covers_zero():
    # Two models that are the same model with different noise: most intervals hold 0.
    covered = 0
    for trial in range(20):
        rng = np.random.default_rng(100 + trial)
        y = np.repeat([0, 1], 15)
        runs = {
            name: [(y, rng.normal(0, 1, 30) + 1.2 * y) for _ in range(3)] for name in ("a", "b")
        }
        row = bootstrap_differences(runs, _auroc, "a", resample_slides(y, 300, trial)).loc["b"]
        covered += row["low"] <= 0 <= row["high"]
    assert covered >= 16, covered
