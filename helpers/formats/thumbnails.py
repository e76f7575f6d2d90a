"""TRIDENT's ``thumbnails/<name>.jpg``."""

from __future__ import annotations

import os

from helpers.fileio import atomic_path


def save_thumbnail(slide, path: str | os.PathLike, size: int = 1000) -> None:
    """Save a JPEG thumbnail whose longest side is about ``size`` px (TRIDENT's ``thumbnails/``
    are what ``slide.get_thumbnail`` returns for that size, saved at PIL's default quality;
    this one is saved at quality 90)."""
    thumb = slide.get_thumbnail((size, size)).convert("RGB")
    with atomic_path(path) as tmp:
        thumb.save(tmp, format="JPEG", quality=90)
