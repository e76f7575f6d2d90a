"""Small plotting helpers that several chapters would otherwise repeat.

Only matplotlib conveniences live here; the pictures themselves (canvases, overlays) are in
``helpers.canvas``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from matplotlib.axes import Axes


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
