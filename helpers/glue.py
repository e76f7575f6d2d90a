"""Numbers a chapter computes, shown inside its prose: MyST-NB's ``glue``, printed for Jupyter.

A result of a run (an AUROC, a count of errors, a slide's name) is never typed into a
chapter's sentences: it changes with the machine, the torch version and the seed. The cell
that computes it calls :func:`glue`, which prints ``name = value`` (what a reader of the
notebook in Jupyter or Colab sees) and hands the same text to MyST-NB, so that the site shows
it where the prose says ``{glue:text}`name```. The notebook export
(``book/_ext/myst_to_notebook.py``) writes that role as the name in code font, matching the
printed line above it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class _Text:
    """The formatted text, glued so that the site shows exactly it. MyST-NB stores an
    object's ``text/plain`` form (its ``repr``) and reads it back with ``ast.literal_eval``
    before inserting it: a bare ``0.900`` would come back as the float 0.9, ``1,202`` as a
    tuple. The ``repr`` of the string reads back as the string itself."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


def glue(name: str, value: Any, fmt: str = "", show: bool = True) -> None:
    """Format ``value`` with ``fmt`` (``format(value, fmt)``), print ``name = text`` unless
    ``show`` is false (for a value already printed in a table), and register it with MyST-NB
    under ``name`` when the book is being built. Returns nothing, so that a cell ending with
    it shows no extra result.

    Outside a book build (Jupyter, Colab, a script) MyST-NB may be missing: then the printed
    line is the only output.
    """
    if not name.isidentifier():
        raise ValueError(f"glue name must be an identifier, not {name!r}")
    text = format(value, fmt)
    if show:
        print(f"{name} = {text}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # Jupyter or Colab without the book's tools
        return
    myst_glue(name, _Text(text), display=False)


def listed(items: Iterable[Any]) -> str:
    """``items`` as a phrase for a sentence: 'none', 'a', 'a and b', 'a, b and c'."""
    words = [str(x) for x in items]
    if len(words) <= 1:
        return words[0] if words else "none"
    return ", ".join(words[:-1]) + " and " + words[-1]
