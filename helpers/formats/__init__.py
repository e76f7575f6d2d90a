"""Every file of a TRIDENT job the book reads or writes, one module per file format (as
TRIDENT keeps its IO in one place); this package is their one public home.

Layout of a TRIDENT job (see :mod:`helpers.layout`) and what each file holds::

    <name>_patches.h5      coords (N, 2) int64 level-0 (x, y) top-left corners, with the
                           attributes TRIDENT writes (patch_size_level0, level0_width, ...)
    features_<enc>/<name>.h5   features (N, dim), coords (N, 2), as TRIDENT v0.3 writes them
    patch_labels/<name>.h5 patch_labels (N,) int64 0/1, tumor_fraction (N,) float32 (this book)
    thumbnails/<name>.jpg  a JPEG of the whole slide
    *.csv                  wsi_name,wsi_label (0 normal, 1 tumor)

Public API (``N`` patches; coordinates are level-0 pixels, hence ``coords_level0``)::

    read_coords(path, patch_size_level0=None) -> (attrs dict, coords_level0 (N, 2) int64)
    read_features(path) -> (features (N, dim), coords_level0 (N, 2) or None)
    check_patch_grid(coords_level0, patch_size_level0, attrs, path)
    save_coords(path, coords_level0, attrs)
    save_features(path, features, coords_level0, coords_attrs, encoder_name)
    read_patch_labels(path) -> (N,) int64
    write_patch_labels(path, labels, fractions=None, attrs=None)   (atomic)
    read_labels_csv(csv_path) -> DataFrame wsi_name (str), wsi_label (int 0/1)
    is_patch_labels_file(path) -> bool
    save_thumbnail(slide, path, size=1000)

``read_coords`` returns ``(attrs, coords)`` in that order, as TRIDENT's own ``read_coords``.
Modules: :mod:`~helpers.formats.h5` (what the h5 files share, :class:`LabelInputError`),
:mod:`~helpers.formats.coords`, :mod:`~helpers.formats.features`,
:mod:`~helpers.formats.patch_labels`, :mod:`~helpers.formats.labels_csv`,
:mod:`~helpers.formats.thumbnails`. Slides themselves are read by :mod:`helpers.slide`.
"""

from helpers.formats.coords import (
    COORDS_ATTRIBUTES,
    check_coords_spacing,
    check_patch_grid,
    coords_patch_size,
    level0_size,
    read_coords,
    save_coords,
)
from helpers.formats.features import read_features, save_features
from helpers.formats.h5 import LabelInputError
from helpers.formats.labels_csv import read_labels_csv
from helpers.formats.patch_labels import (
    is_patch_labels_file,
    patch_labels_nbytes,
    read_patch_labels,
    read_tumor_fraction,
    write_patch_labels,
    write_patch_labels_h5,
)
from helpers.formats.thumbnails import save_thumbnail

__all__ = [
    "COORDS_ATTRIBUTES",
    "LabelInputError",
    "check_coords_spacing",
    "check_patch_grid",
    "coords_patch_size",
    "is_patch_labels_file",
    "level0_size",
    "patch_labels_nbytes",
    "read_coords",
    "read_features",
    "read_labels_csv",
    "read_patch_labels",
    "read_tumor_fraction",
    "save_coords",
    "save_features",
    "save_thumbnail",
    "write_patch_labels",
    "write_patch_labels_h5",
]
