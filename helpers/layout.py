"""The folder layout of a cohort and of TRIDENT's outputs, written down once.

A cohort (the demo, the rehearsal folder, or CAMELYON16 arranged the same way)::

    <root>/wsis/<name>.tif                 slides (any of WSI_EXTENSIONS for a reader's own)
    <root>/masks/<name>_mask.tif           tumour masks (CAMELYON16's naming)
    <root>/annotations/<name>.xml          ASAP XML annotations
    <root>/trident_processed/              TRIDENT's --job_dir

TRIDENT's job folder (``run_batch_of_slides.py --job_dir``), plus this book's ``patch_labels/``::

    <job_dir>/thumbnails/<name>.jpg
    <job_dir>/<patch_dir>/patches/<name>_patches.h5          coords
    <job_dir>/<patch_dir>/features_<encoder>/<name>.h5       features
    <job_dir>/<patch_dir>/patch_labels/<name>.h5             patch labels (this book)

``patch_dir`` is ``{mag}x_{patch_size}px_{overlap}px_overlap``. :class:`TridentLayout` gives
these paths to any object with ``job_dir``, ``patch_dir`` and ``encoder`` attributes
(:class:`helpers.settings.Settings`, :class:`CohortLayout`); :func:`demo_dir` says where the
demo cohort lives.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The demo's weight-free encoder (``features_demo_stats/``).
DEMO_ENCODER = "demo_stats"
#: TRIDENT's folder for 512 px patches at 20x without overlap.
DEFAULT_PATCH_DIR = "20x_512px_0px_overlap"
#: Slide file extensions looked for, in this order.
WSI_EXTENSIONS = (".tif", ".tiff", ".svs", ".ndpi", ".mrxs", ".scn")

#: Sub-folders of a cohort's root.
WSIS_DIR, MASKS_DIR, ANNOTATIONS_DIR, JOB_DIR = "wsis", "masks", "annotations", "trident_processed"


def mask_file(name: str) -> str:
    """``<name>_mask.tif``: CAMELYON16's name for the tumour mask of slide ``name``."""
    return f"{name}_mask.tif"


def annotation_file(name: str) -> str:
    """``<name>.xml``: the ASAP annotation file of slide ``name``."""
    return f"{name}.xml"


def coords_file(name: str) -> str:
    """``<name>_patches.h5``: TRIDENT's coords file of slide ``name``."""
    return f"{name}_patches.h5"


class TridentLayout:
    """Paths of TRIDENT's outputs, for a class that has ``job_dir`` (Path), ``patch_dir`` and
    ``encoder`` (str) attributes."""

    job_dir: Path
    patch_dir: str
    encoder: str

    @property
    def trident_dir(self) -> Path:
        """The ``{mag}x_{patch_size}px_{overlap}px_overlap`` folder of the TRIDENT job."""
        return self.job_dir / self.patch_dir

    @property
    def coords_dir(self) -> Path:
        return self.trident_dir / "patches"

    @property
    def features_dir(self) -> Path:
        return self.trident_dir / f"features_{self.encoder}"

    @property
    def patch_labels_dir(self) -> Path:
        return self.trident_dir / "patch_labels"

    @property
    def thumbnails_dir(self) -> Path:
        return self.job_dir / "thumbnails"

    def coords_path(self, name: str) -> Path:
        return self.coords_dir / coords_file(name)

    def features_path(self, name: str) -> Path:
        return self.features_dir / f"{name}.h5"

    def patch_labels_path(self, name: str) -> Path:
        return self.patch_labels_dir / f"{name}.h5"

    def thumbnail_path(self, name: str) -> Path:
        return self.thumbnails_dir / f"{name}.jpg"


@dataclass(frozen=True)
class CohortLayout(TridentLayout):
    """A cohort's files under ``root`` arranged as above (the demo, the rehearsal folder):
    ``wsis/<name>.tif``, ``masks/``, ``annotations/`` and the TRIDENT job folder."""

    root: Path
    patch_dir = DEFAULT_PATCH_DIR
    encoder = DEMO_ENCODER

    @property
    def job_dir(self) -> Path:  # type: ignore[override]
        return self.root / JOB_DIR

    def wsi(self, name: str) -> Path:
        return self.root / WSIS_DIR / f"{name}.tif"

    def mask(self, name: str) -> Path:
        return self.root / MASKS_DIR / mask_file(name)

    def xml(self, name: str) -> Path:
        return self.root / ANNOTATIONS_DIR / annotation_file(name)


def _default_demo_dir() -> Path:
    """``<repo>/data/demo`` in a source checkout, ``~/mil-book-data/demo`` otherwise."""
    repo = Path(__file__).resolve().parents[1]
    if (repo / "pyproject.toml").exists():
        return repo / "data" / "demo"
    return Path.home() / "mil-book-data" / "demo"


def demo_dir() -> Path:
    """Where the demo cohort lives: ``MIL_BOOK_DEMO_DIR``, else ``<repo>/data/demo`` in a
    source checkout, else ``~/mil-book-data/demo`` (``python -m helpers.demo`` writes there)."""
    value = os.environ.get("MIL_BOOK_DEMO_DIR")
    return Path(value).expanduser() if value else _default_demo_dir()
