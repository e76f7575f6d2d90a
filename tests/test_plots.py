"""helpers.plots: tick stripping on one Axes, a list and a 2-D array of them."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers.plots import strip_ticks  # noqa: E402


def test_strip_ticks_on_one_axes_a_list_and_an_array():
    fig, axes = plt.subplots(2, 3)
    try:
        axes[0, 0].set_ylabel("row name")
        assert len(axes[0, 0].get_xticks()) > 0  # matplotlib puts ticks by default
        strip_ticks(axes[1, 2])
        assert len(axes[1, 2].get_xticks()) == 0 and len(axes[1, 2].get_yticks()) == 0
        assert len(axes[1, 1].get_xticks()) > 0  # the others are untouched
        strip_ticks(list(axes[1, :2]))
        strip_ticks(axes)
        for ax in axes.ravel():
            assert len(ax.get_xticks()) == 0 and len(ax.get_yticks()) == 0
        assert axes[0, 0].get_ylabel() == "row name"  # labels stay
    finally:
        plt.close(fig)


def test_strip_ticks_rejects_what_is_not_an_axes():
    with pytest.raises(TypeError, match="Axes"):
        strip_ticks([plt.figure()])
    plt.close("all")
