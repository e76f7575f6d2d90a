"""Patch labels from tumor masks or ASAP XML annotations, for a folder of TRIDENT coords.

A patch is labelled tumor (1) when the fraction of its area covered by tumor is strictly
greater than a threshold (``fraction > threshold``, default 0.5), else normal (0). The
fractions come from :mod:`helpers.coverage` (one low-resolution read of the mask per slide,
or the XML polygons of :mod:`helpers.annotations` rasterised once); the files are read and
written by :mod:`helpers.formats`. This package keeps the labelling rules
(:mod:`~helpers.labels.rules`), the batch over a folder (:mod:`~helpers.labels.folder`) and
the command (:mod:`~helpers.labels.cli`); the names below have their home here.

Public API (shapes: ``N`` patches, ``coords_level0`` ``(N, 2)`` level-0 ``(x, y)``)::

    labels_from_fractions(fractions, threshold=0.5) -> (N,) int64
    relaxed_threshold(fractions, threshold=0.5) -> float
    label_slide(coords_level0, patch_size_level0, mask=None, xml_path=None, ...)
        -> (labels, fractions, source)
    label_folder(csv_path, coords_dir, save_dir, masks_dir=None, annotations_dir=None, ...)
        -> pandas.DataFrame, one row per slide

Command line (the earlier tutorial's arguments)::

    python -m helpers.labels --csv_path wsi_labels.csv --masks_dir masks \\
        --coords_dir .../20x_512px_0px_overlap/patches \\
        --save_dir .../20x_512px_0px_overlap/patch_labels \\
        [--patch_size 1024 --patch_level 0] [--annotations_dir annotations] [--threshold 0.5]

Without ``--patch_size`` each slide's patch side is the ``patch_size_level0`` its coords file
records, so one run labels a cohort that mixes patch sizes (40x and 20x slides, say).
"""

from helpers.labels.cli import build_parser, main, summary_line
from helpers.labels.folder import label_folder
from helpers.labels.rules import (
    DEFAULT_THRESHOLD,
    label_slide,
    labels_from_fractions,
    relaxed_threshold,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "build_parser",
    "label_folder",
    "label_slide",
    "labels_from_fractions",
    "main",
    "relaxed_threshold",
    "summary_line",
]
