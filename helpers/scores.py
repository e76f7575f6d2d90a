"""Scaling of scores: one bag's patch scores (attention, logits) mapped to [0, 1] for heatmaps
and for comparing bags.

Public API (``N`` patches)::

    minmax(values) -> (N,) float64 in [0, 1]
"""

from __future__ import annotations

import numpy as np

__all__ = ["minmax"]


def minmax(values) -> np.ndarray:
    """``values`` scaled to [0, 1] by their min and max; all zeros when they are constant.

    Constant input (a bag of one patch, a flat heatmap) maps to 0, as scikit-learn's
    ``minmax_scale`` does: nothing stands out, so nothing is drawn hot and no patch of that
    bag outranks another bag's patches. Empty input gives an empty array.

    Arguments:
        values: ``(N,)`` finite numbers; a NaN or infinite value is a ``ValueError`` (it would
            turn the whole bag into zeros: a blank heatmap, a bag that scores nothing).

    Returns:
        ``(N,)`` float64.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return values.copy()
    bad = ~np.isfinite(values)
    if bad.any():
        raise ValueError(
            f"minmax: {int(bad.sum())} of {values.size} values are NaN or infinite (at "
            f"{np.flatnonzero(bad)[:5].tolist()}); scores must be finite numbers."
        )
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)
