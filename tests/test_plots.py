"""helpers.plots: tick stripping on one Axes, a list and a 2-D array of them; the ABMIL diagram."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from helpers.plots import abmil_diagram, strip_ticks  # noqa: E402


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


@pytest.mark.parametrize(("n_patches", "margins"), [(4, False), (4, True), (2, False), (6, True)])
def test_abmil_diagram_draws_the_symbols_without_overlapping_text(n_patches, margins):
    fig, ax = plt.subplots(figsize=(10, 4))  # matplotlib's margins: the axes is smaller
    if not margins:
        fig.subplots_adjust(left=0, right=1, bottom=0, top=1)
    try:
        assert abmil_diagram(ax, n_patches=n_patches) is ax
        assert not ax.axison
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        texts = [t for t in ax.texts if t.get_text()]
        labels = " ".join(t.get_text() for t in texts)
        for symbol in (
            r"\tanh",
            r"\mathbf{z}",
            r"s_n = \exp(f_n)",
            "softmax",
            r"\sigma(\ell)",
            r"\mathbf{x}_{N}",
            r"\mathbf{h}_{N}",
        ):
            assert symbol in labels, symbol
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
        figure_box = fig.bbox
        for i, (text_a, box_a) in enumerate(boxes):
            # inside the figure, and clear of every other text
            assert figure_box.x0 <= box_a.x0 and box_a.x1 <= figure_box.x1, text_a
            assert figure_box.y0 <= box_a.y0 and box_a.y1 <= figure_box.y1, text_a
            for text_b, box_b in boxes[i + 1 :]:
                assert not box_a.overlaps(box_b), (text_a, text_b)
    finally:
        plt.close(fig)


def test_abmil_diagram_makes_its_own_figure_and_checks_n_patches():
    ax = abmil_diagram()
    try:
        assert tuple(ax.figure.get_size_inches()) == (10, 4)
    finally:
        plt.close(ax.figure)
    with pytest.raises(ValueError, match="n_patches"):
        abmil_diagram(n_patches=1)
    plt.close("all")
