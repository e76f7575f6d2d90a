"""Progress bars that never show as an error in a notebook."""

from __future__ import annotations

import sys


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (as ``tqdm.autonotebook`` tells)."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_bar(iterable=None, **kwargs):
    """A tqdm progress bar that never shows as an error in a notebook.

    In a terminal: tqdm's bar on stderr. In Jupyter: tqdm's notebook widget when ipywidgets
    is installed, else no bar at all (tqdm's text bar goes to stderr, which Jupyter and the
    HTML export show as a red block, like an error). ``kwargs`` are tqdm's.
    """
    from tqdm import tqdm

    if in_notebook():
        try:
            # tqdm.notebook needs it; an optional dependency (not installed by the package)
            import ipywidgets  # noqa: F401  # pyright: ignore[reportMissingImports]
            from tqdm.notebook import tqdm
        except ImportError:
            kwargs["disable"] = True
    return tqdm(iterable, **kwargs)
