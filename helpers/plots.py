"""Small plotting helpers that several chapters would otherwise repeat.

Only matplotlib conveniences live here; the pictures themselves (canvases, overlays) are in
``helpers.canvas``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle


def strip_ticks(axes: Axes | Iterable[Axes] | np.ndarray) -> None:
    """Remove the x and y ticks (and their labels) of one or more image axes.

    ``axes`` is one ``Axes``, a list of them or the array ``plt.subplots`` returns (any
    shape). Axis labels and titles are kept, so ``ax.set_ylabel`` still names a row. Images
    of slides and patches have pixel positions on their axes, which a reader does not need.
    Raises ``TypeError`` for anything that is not an ``Axes``.
    """
    for ax in np.ravel(np.asarray(axes, dtype=object)):
        if not isinstance(ax, Axes):
            raise TypeError(f"strip_ticks expects matplotlib Axes, got {type(ax).__name__}")
        ax.set_xticks([])
        ax.set_yticks([])


# Okabe & Ito's palette, safe for the common colour-vision deficiencies.
_INK = "#222222"
_ROLE = {
    "frozen": "#999999",  # grey: the patch encoder, not trained here
    "value": "#0072B2",  # blue: instance network and the weighted sum
    "attention": "#D55E00",  # vermillion: attention network and softmax
    "classifier": "#CC79A7",  # reddish purple
}


def _box(ax: Axes, x0: float, y0: float, x1: float, y1: float, role: str) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x0, y0),
            x1 - x0,
            y1 - y0,
            boxstyle="round,pad=0,rounding_size=0.06",
            facecolor=to_rgba(_ROLE[role], 0.15),
            edgecolor=_ROLE[role],
            linewidth=1.3,
        )
    )


def _arrow(
    ax: Axes, x0: float, y0: float, x1: float, y1: float, k: float, color: str = _INK
) -> None:
    ax.add_patch(
        FancyArrowPatch(
            (x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=9 * k, color=color, linewidth=1.0
        )
    )


@dataclass
class _Diagram:
    """The ABMIL diagram's axes, text scale ``k`` and layout (x columns, y rows)."""

    ax: Axes
    k: float
    names: list[str]
    ys: list[float]
    y_dots: float
    half: float
    y_hi: float = 3.05
    y_lo: float = 1.25
    # columns (x from, x to)
    tile: tuple[float, float] = (0.0, 0.0)
    enc: tuple[float, float] = (1.05, 1.65)
    inst: tuple[float, float] = (2.25, 2.85)
    att: tuple[float, float] = (3.8, 4.4)
    soft: tuple[float, float] = (5.0, 5.8)
    pool: tuple[float, float] = (6.4, 7.3)
    clf: tuple[float, float] = (7.9, 8.7)
    tap: float = 3.2  # where h_n leaves for the weighted sum

    @property
    def tall(self) -> tuple[float, float]:
        """The bottom and top of the boxes that span the bag."""
        return self.y_lo - 0.2, self.y_hi + 0.2

    def text(self, x: float, y: float, s: str, size: float = 9, **kw) -> None:
        kw["fontsize"] = size * self.k
        kw.setdefault("ha", "center")
        kw.setdefault("va", "center")
        self.ax.text(x, y, s, color=kw.pop("color", _INK), **kw)


def _diagram_layout(ax: Axes, n_patches: int) -> _Diagram:
    names = [str(i + 1) for i in range(n_patches - 1)] + ["N"]
    slots = n_patches + 1  # one row of dots before patch N
    ys_all = np.linspace(3.05, 1.25, slots)
    half = min(0.14, 0.32 * (ys_all[0] - ys_all[1]))  # half the height of a row box
    # sizes in points are for a 10 x 4 inch axes; scale them with the axes actually given
    # a diagram's axes sit on a Figure (matplotlib types ax.figure as maybe a SubFigure)
    fig_w, fig_h = cast(Figure, ax.figure).get_size_inches()
    pos = ax.get_position(original=True)
    k = min(pos.width * fig_w / 10, pos.height * fig_h / 4)
    ys = list(ys_all[:-2]) + [ys_all[-1]]  # the rows of patches
    d = _Diagram(ax, k, names, ys, ys_all[-2], half)
    d.tile = (0.22, 0.22 + 2 * half + 0.05)
    return d


def _draw_patch(d: _Diagram, y: float, rng: np.random.Generator) -> None:
    """A patch: pink tissue with a few purple nuclei."""
    side = d.tile[1] - d.tile[0]
    d.ax.add_patch(
        Rectangle(
            (d.tile[0], y - side / 2),
            side,
            side,
            facecolor="#F2C6DA",
            edgecolor=_INK,
            linewidth=0.6,
        )
    )
    for cx, cy in rng.uniform(0.15, 0.85, size=(5, 2)):
        d.ax.add_patch(
            Circle(
                (d.tile[0] + cx * side, y - side / 2 + cy * side),
                0.03 * side / 0.3,
                facecolor="#6A3D9A",
                edgecolor="none",
            )
        )


def _draw_rows(d: _Diagram) -> None:
    """One row per patch: encoder, instance and attention networks, then a row of dots."""
    ax, k, text = d.ax, d.k, d.text
    enc, inst, att, soft, pool = d.enc, d.inst, d.att, d.soft, d.pool
    rng = np.random.default_rng(0)
    for name, y in zip(d.names, d.ys, strict=True):
        _draw_patch(d, y, rng)
        _arrow(ax, d.tile[1] + 0.03, y, enc[0], y, k)
        for (x0, x1), role in ((enc, "frozen"), (inst, "value"), (att, "attention")):
            _box(ax, x0, y - d.half, x1, y + d.half, role)
        _arrow(ax, enc[1], y, inst[0], y, k)
        text((enc[1] + inst[0]) / 2, y + 0.04, rf"$\mathbf{{x}}_{{{name}}}$", va="bottom")
        _arrow(ax, inst[1], y, att[0], y, k)
        ax.plot([d.tap], [y], "o", color=_ROLE["value"], markersize=3.5 * k)
        text((d.tap + att[0]) / 2, y + 0.04, rf"$\mathbf{{h}}_{{{name}}}$", va="bottom")
        _arrow(ax, att[1], y, soft[0], y, k, _ROLE["attention"])
        text((att[1] + soft[0]) / 2, y + 0.04, rf"$f_{{{name}}}$", va="bottom")
        _arrow(ax, soft[1], y, pool[0], y, k, _ROLE["attention"])
        text((soft[1] + pool[0]) / 2, y + 0.04, rf"$s_{{{name}}}$", va="bottom")
        text((pool[0] + pool[1]) / 2, y, rf"$s_{{{name}}}\,\mathbf{{h}}_{{{name}}}$")
    for x in ((d.tile[0] + d.tile[1]) / 2, *(sum(c) / 2 for c in (enc, inst, att, pool))):
        text(x, d.y_dots, "⋮", size=10)


def _draw_bag(d: _Diagram) -> None:
    """The softmax and the weighted sum: one box each for the whole bag, and the line that
    brings every ``h_n`` to the weighted sum."""
    ax, k, (tall_lo, tall_hi), soft, pool = d.ax, d.k, d.tall, d.soft, d.pool
    _box(ax, *soft[:1], tall_lo, soft[1], tall_hi, "attention")
    _box(ax, *pool[:1], tall_lo, pool[1], tall_hi, "value")
    x_mid = sum(soft) / 2
    ax.add_patch(
        FancyArrowPatch(
            (x_mid, d.y_lo - 0.1),
            (x_mid, d.y_hi + 0.1),
            arrowstyle="<|-|>",
            mutation_scale=8 * k,
            color=_ROLE["attention"],
            linewidth=1.0,
        )
    )
    y_half = (d.y_hi + d.y_lo) / 2
    d.text(x_mid + 0.14, y_half, r"${\sum}_n s_n = 1$", rotation=90, color=_ROLE["attention"])
    # h_1..h_N along the bottom to the weighted sum
    y_bus, x_in = tall_lo - 0.2, sum(pool) / 2 - 0.25
    ax.plot([d.tap, d.tap, x_in], [d.ys[0], y_bus, y_bus], color=_ROLE["value"], linewidth=1.0)
    _arrow(ax, x_in, y_bus, x_in, tall_lo, k, _ROLE["value"])
    hs = r"$\mathbf{h}_1, \ldots, \mathbf{h}_N$"
    d.text((d.tap + pool[0]) / 2, y_bus - 0.04, hs, va="top", color=_ROLE["value"])


def _draw_classifier(d: _Diagram) -> None:
    """The bag level: the classifier reads ``z`` only."""
    ax, k, text, pool, clf = d.ax, d.k, d.text, d.pool, d.clf
    y_mid = (d.y_hi + d.y_lo) / 2
    _arrow(ax, pool[1], y_mid, clf[0], y_mid, k)
    text((pool[1] + clf[0]) / 2, y_mid + 0.04, r"$\mathbf{z}$", va="bottom")
    _box(ax, clf[0], y_mid - 0.3, clf[1], y_mid + 0.3, "classifier")
    text(sum(clf) / 2, y_mid, r"$\mathbf{u},\, b$")
    text(sum(clf) / 2, y_mid + 0.38, "linear\nclassifier", va="bottom", size=8, linespacing=1.1)
    _arrow(ax, clf[1], y_mid, clf[1] + 0.45, y_mid, k)
    text(clf[1] + 0.22, y_mid + 0.04, r"$\ell$", va="bottom")
    text(clf[1] + 0.5, y_mid, r"$\hat{p} = \sigma(\ell)$", ha="left")


def _draw_headers(d: _Diagram) -> None:
    """Headers over the columns, and what each group of them does."""
    y_head = d.tall[1] + 0.08
    for x, s in (
        (sum(d.tile) / 2, "bag of\nN patches"),
        (sum(d.enc) / 2, "patch encoder\n(frozen, TRIDENT)"),
        (sum(d.inst) / 2, "instance\nnetwork"),
        (sum(d.att) / 2, "attention\nnetwork"),
        (sum(d.soft) / 2, "softmax\nover the bag"),
        (sum(d.pool) / 2, "weighted\nsum"),
    ):
        d.text(x, y_head, s, va="bottom", size=8, linespacing=1.1)
    y_group = 3.72
    for x0, x1, s in (
        (d.enc[0], d.att[1], "each patch on its own, the same weights in every row"),
        (d.soft[0], d.pool[1], "across the bag"),
        (d.clf[0], 9.85, r"bag level: sees only $\mathbf{z}$"),
    ):
        d.ax.plot(
            [x0, x0, x1, x1],
            [y_group - 0.05, y_group, y_group, y_group - 0.05],
            color=_INK,
            linewidth=0.8,
        )
        d.text((x0 + x1) / 2, y_group + 0.04, s, va="bottom", size=8)


def _draw_formulas(d: _Diagram) -> None:
    """The formulas, under their columns, on two staggered lines."""
    y_a, y_b = 0.42, 0.14
    clf = sum(d.clf) / 2 + 0.6
    for x, y, s in (
        (sum(d.enc) / 2, y_a, r"$\mathbf{x}_n \in \mathbb{R}^D$"),
        (
            sum(d.inst) / 2,
            y_b,
            r"$\mathbf{h}_n = \mathrm{ReLU}(\mathbf{W}_0 \mathbf{x}_n"
            r" + \mathbf{b}_0) \in \mathbb{R}^P$",
        ),
        (
            sum(d.att) / 2 + 0.3,
            y_a,
            r"$f_n = \mathbf{w}^\top \tanh(\mathbf{V} \mathbf{h}_n + \mathbf{c})$",
        ),
        (sum(d.soft) / 2 + 0.3, y_b, r"$s_n = \exp(f_n) \,/\, {\sum}_j \exp(f_j)$"),
        (sum(d.pool) / 2 + 0.2, y_a, r"$\mathbf{z} = {\sum}_n s_n \mathbf{h}_n$"),
        (
            clf,
            y_a,
            r"$\ell = \mathbf{u}^\top \mathbf{z} + b"
            r" = {\sum}_n s_n\, \mathbf{u}^\top \mathbf{h}_n + b$",
        ),
        (clf, y_b, r"patch $n$ adds $s_n\, \mathbf{u}^\top \mathbf{h}_n$ to $\ell$"),
    ):
        d.text(x, y, s)


def abmil_diagram(ax: Axes | None = None, n_patches: int = 4) -> Axes:
    """Draw attention-based MIL (Ilse et al., 2018) with the symbols of Chapter 4.

    A bag of patches goes row by row through the frozen patch encoder (features
    ``x_n``), the instance network (``h_n``) and the attention network (scores ``f_n``):
    one small box per patch, the same weights in every row. The softmax and the weighted
    sum are one tall box each, because they couple all the patches of the bag; the
    embeddings ``h_n`` reach the weighted sum along the line underneath. The classifier
    sees only ``z``; the footer spells out each step, and that the logit splits into
    per-patch shares ``s_n u^T h_n``.

    Arguments:
        ax: The axes to draw on; ``None`` makes a figure of 10 x 4 inches, filled (the
            layout's size, with 9-point text; on a smaller axes the text shrinks with it).
        n_patches: Rows drawn, between 2 and 6 (the last one is patch ``N``, after a row of
            dots).

    Returns:
        The Axes, turned off.
    """
    if not 2 <= n_patches <= 6:
        raise ValueError(f"n_patches must be between 2 and 6, got {n_patches}")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
        ax.figure.subplots_adjust(left=0, right=1, bottom=0, top=1)
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 4)
    ax.set_aspect("equal")
    ax.axis("off")
    d = _diagram_layout(ax, n_patches)
    for draw in (_draw_rows, _draw_bag, _draw_classifier, _draw_headers, _draw_formulas):
        draw(d)
    return ax
