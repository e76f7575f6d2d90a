"""Paired bootstrap over test slides: how sure is a difference between two models?

Three seeds show how much a model moves when it is trained again; they say nothing about
how much its test metrics would move on another sample of test slides, which on 30 (or
CAMELYON16's 129) slides is the larger uncertainty. The paired bootstrap covers both: each
replicate draws the test slides again, with replacement (tumour and normal slides
separately, so every replicate has both classes), and evaluates **every** model on the
**same** draw, averaging each model's metric over its seeds. The difference between two
models on a replicate is paired: the slides that are easy or hard for both cancel out.

Public API (``n`` test slides, ``B`` replicates)::

    resample_slides(y (n,), n_boot=B, seed=0) -> (B, n) int slide indices
    bootstrap_differences(runs, metric, reference, draws, level=0.95) -> DataFrame
        one row per model but the reference: difference (on all slides), low, high
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd

__all__ = ["resample_slides", "bootstrap_differences"]

Run = TypeVar("Run")


def resample_slides(y: np.ndarray, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """``n_boot`` bootstrap draws of slide indices, stratified by the slide label.

    Arguments:
        y: ``(n,)`` slide labels (0/1); each draw keeps the number of slides of each label.
        n_boot: number of replicates (positive).
        seed: seed of the NumPy generator, so that a chapter draws the same replicates on
            every run.

    Returns:
        ``(n_boot, n)`` int64 indices into the slides, tumour and normal slides each drawn
        with replacement from their own class.
    """
    y = np.asarray(y).reshape(-1)
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}.")
    if len(y) == 0:
        raise ValueError("resample_slides needs at least one slide.")
    rng = np.random.default_rng(seed)
    draws = np.empty((n_boot, len(y)), dtype=np.int64)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)  # where this class sits in every draw
        draws[:, members] = rng.choice(members, size=(n_boot, len(members)), replace=True)
    return draws


def _mean_over_seeds(
    runs: Sequence[Run], metric: Callable[[Run, np.ndarray], float], idx: np.ndarray
) -> float:
    return float(np.mean([metric(run, idx) for run in runs]))


def bootstrap_differences(
    runs: Mapping[str, Sequence[Run]],
    metric: Callable[[Run, np.ndarray], float],
    reference: str,
    draws: np.ndarray,
    level: float = 0.95,
) -> pd.DataFrame:
    """Each model's metric minus the reference's, with a paired bootstrap interval.

    Arguments:
        runs: model name -> its runs (one per seed), in any form ``metric`` reads.
        metric: ``metric(run, idx)`` -> the metric of one run on the test slides ``idx``
            (``(n,)`` int indices, repeats allowed: a repeated slide counts twice).
        reference: the model every other one is compared with (a key of ``runs``).
        draws: ``(B, n)`` slide indices, e.g. from :func:`resample_slides`; every model is
            evaluated on the same draws.
        level: coverage of the percentile interval.

    Returns:
        A DataFrame indexed by model (the reference left out) with ``difference`` (the
        mean over seeds on all test slides, minus the reference's), ``low`` and ``high``
        (the percentile interval of the difference over the draws). Replicates where the
        metric is undefined (NaN for either model) are left out of the interval.
    """
    if reference not in runs:
        raise KeyError(f"reference {reference!r} is not among the models {list(runs)}.")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}.")
    draws = np.asarray(draws)
    every = np.arange(draws.shape[1])
    values = {
        name: np.array([_mean_over_seeds(model_runs, metric, idx) for idx in draws])
        for name, model_runs in runs.items()
    }  # name -> (B,)
    full = {name: _mean_over_seeds(model_runs, metric, every) for name, model_runs in runs.items()}
    tail = 100 * (1 - level) / 2
    rows = {}
    for name in runs:
        if name == reference:
            continue
        diff = values[name] - values[reference]  # (B,) paired: same slides for both
        diff = diff[np.isfinite(diff)]
        low, high = np.percentile(diff, [tail, 100 - tail]) if len(diff) else (np.nan, np.nan)
        rows[name] = {"difference": full[name] - full[reference], "low": low, "high": high}
    return pd.DataFrame.from_dict(rows, orient="index")
