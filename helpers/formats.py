"""Every file the book reads or writes, in one module (as TRIDENT keeps its IO in one place).

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
    open_slide(path_or_slide, what="slide") -> (openslide.OpenSlide, opened_here)
    read_thumbnail(path_or_slide, max_size=1000) -> (h, w, 3) uint8
    save_thumbnail(slide, path, size=1000)

``read_coords`` returns ``(attrs, coords)`` in that order, as TRIDENT's own ``read_coords``.
Every h5 file is made in memory and written with :func:`helpers.fileio.write_bytes` (free
space checked first; a full disk is a clear ``OSError``, never half a file or an h5py crash).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from helpers.fileio import atomic_path, write_bytes
from helpers.grid import check_coords_level0
from helpers.layout import WSI_EXTENSIONS

__all__ = [
    "LabelInputError",
    "read_coords",
    "read_features",
    "check_patch_grid",
    "save_coords",
    "save_features",
    "read_patch_labels",
    "read_tumor_fraction",
    "write_patch_labels",
    "write_patch_labels_h5",
    "read_labels_csv",
    "is_patch_labels_file",
    "open_slide",
    "read_thumbnail",
    "save_thumbnail",
]

#: The attributes TRIDENT v0.3.0 stores on a coords dataset (see trident.coords_attributes).
COORDS_ATTRIBUTES = (
    "patch_size",
    "patch_size_level0",
    "level0_magnification",
    "target_magnification",
    "overlap",
    "name",
    "savetodir",
    "level0_width",
    "level0_height",
)
#: Problems listed in an error message before "... and N more".
MAX_SHOWN = 5
#: The datasets of a patch-labels file of this book (``helpers.labels`` writes them).
PATCH_LABEL_KEYS = frozenset({"patch_labels", "tumor_fraction"})
#: What to do about a damaged TRIDENT file.
REDO_COORDS = "run TRIDENT's patching (--task coords) again for this slide"
REDO_FEATURES = "extract this slide's features again (TRIDENT --task feat)"


class LabelInputError(ValueError):
    """Bad input: a missing file, a mismatch, an unreadable file."""


# --------------------------------------------------------------------------------------------
# coords and features (TRIDENT's h5 files)


def _read_dataset(path: Path, key: str, what: str) -> tuple[np.ndarray, dict]:
    """Dataset ``key`` of an h5 file and its attributes (numpy scalars as Python values);
    ``FileNotFoundError`` or :class:`LabelInputError` naming ``what`` and the file."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if key not in f:
                raise LabelInputError(f"{path} has no dataset '{key}' (keys: {list(f.keys())}).")
            data = np.asarray(f[key][:])
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f[key].attrs.items()}
    except OSError as exc:
        raise LabelInputError(
            f"cannot read {what} {path}: {exc} (an empty, truncated or non-h5 file)"
        ) from exc
    return data, attrs


def _whole_positive(attrs: dict, key: str, path: Path) -> int | None:
    """Attribute ``key`` as an int when present (TRIDENT stores some as floats, 1024.0);
    :class:`LabelInputError` naming the file when it is not a whole number > 0 (NaN, 0, ...)."""
    if key not in attrs:
        return None
    value = attrs[key]
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0 and number == round(number)):
        raise LabelInputError(
            f"{path}: the attribute {key}={value!r} of 'coords' is not a whole number > 0 "
            f"(a damaged file, or one TRIDENT did not write): {REDO_COORDS}."
        )
    return int(round(number))


def read_coords(path, patch_size_level0: int | None = None) -> tuple[dict, np.ndarray]:
    """Coordinates of a TRIDENT ``<name>_patches.h5`` file, checked against the patch size.

    Arguments:
        path: The h5 file, dataset ``coords`` ``(N, 2)`` int64 level-0 ``(x, y)``.
        patch_size_level0: Expected patch side in level-0 pixels. When given, it must equal the
            file's ``patch_size_level0`` attribute (if any), and the patch positions must lie
            on a grid of step ``patch_size_level0 - overlap``.

    Returns:
        ``(attrs, coords_level0 (N, 2) int64)`` where ``attrs`` are the attributes of
        ``coords``: the order of TRIDENT's ``read_coords``.
    """
    path = Path(path)
    coords_level0, attrs = _read_dataset(path, "coords", "coords file")
    for key in ("patch_size_level0", "level0_width", "level0_height"):
        _whole_positive(attrs, key, path)  # NaN, 0 or 1.5: an error naming the file
    try:
        coords_level0 = check_coords_level0(coords_level0)
    except ValueError as exc:
        raise LabelInputError(f"{path}: {exc}") from exc
    if patch_size_level0 is not None:
        check_coords_spacing(coords_level0, int(patch_size_level0), attrs, path)
    return attrs, coords_level0


def check_coords_spacing(
    coords_level0: np.ndarray, patch_size_level0: int, attrs: dict, path: Path
) -> None:
    described = ", ".join(
        f"{k}={attrs[k]}"
        for k in ("patch_size", "patch_size_level0", "level0_magnification", "target_magnification")
        if k in attrs
    )
    hint = f" (the h5 attributes give {described})" if described else ""
    if "patch_size_level0" in attrs and int(attrs["patch_size_level0"]) != patch_size_level0:
        raise LabelInputError(
            f"{path.name}: patch_size_level0={patch_size_level0} was asked for but the coords "
            f"were made with patch_size_level0={int(attrs['patch_size_level0'])}{hint}. Pass "
            f"--patch_size {int(attrs['patch_size_level0'])} --patch_level 0, or leave "
            "--patch_size out to use each file's own."
        )
    step = patch_size_level0 - int(attrs.get("overlap", 0) or 0)
    if len(coords_level0) < 2 or step <= 0:
        return
    spacing = _spacing(coords_level0)
    if spacing not in (0, step):
        raise LabelInputError(
            f"{path.name}: the patches are spaced by {spacing} level-0 px, which does not match "
            f"patch_size_level0={patch_size_level0} (grid step {step}){hint}."
        )


def _spacing(coords_level0: np.ndarray) -> int:
    """The largest step every patch position is a multiple of (from the first patch), in
    level-0 px: the grid step of a coords file (0 for a single position)."""
    offsets = np.concatenate(
        [coords_level0[:, 0] - coords_level0[0, 0], coords_level0[:, 1] - coords_level0[0, 1]]
    )
    return int(np.gcd.reduce(np.abs(offsets))) if len(offsets) else 0


def check_patch_grid(
    coords_level0: np.ndarray, patch_size_level0: int, attrs: dict, path: str | os.PathLike
) -> None:
    """The patches of a coords file must each have their own cell of the patch grid.

    The bags' ``coords`` are grid cells (``coords_level0 // patch_size_level0``), and the
    adjacency, the heatmaps and the FROC are computed on them. A TRIDENT job made with
    ``--overlap`` (or a ``patch_size_level0`` that is not the coords' spacing) puts several
    patches in one cell: refused with a :class:`LabelInputError` naming the file and why.
    """
    overlap = attrs.get("overlap", 0)
    try:
        overlapping = float(overlap) != 0
    except (TypeError, ValueError):
        overlapping = True
    if overlapping:
        raise LabelInputError(
            f"{path}: the patches overlap (overlap={overlap!r}, TRIDENT's --overlap): this "
            "book's bags need one patch per grid cell (the adjacency, the heatmaps and the "
            "FROC work on the patch grid). Run TRIDENT's patching again with --overlap 0 (its "
            "default), extract the features of those patches, and point MIL_BOOK_PATCH_DIR at "
            "that job's folder."
        )
    if not len(coords_level0):
        return
    spacing = _spacing(coords_level0)
    if spacing % patch_size_level0 or len(np.unique(coords_level0, axis=0)) < len(coords_level0):
        raise LabelInputError(
            f"{path}: the patches are spaced by {spacing} level-0 px (or repeat), which is not "
            f"a multiple of patch_size_level0={patch_size_level0}: patches would share grid "
            f"cells. The file's patch_size_level0 does not match its coords: {REDO_COORDS}."
        )


def level0_size(attrs: dict, path: str | os.PathLike = "coords file") -> tuple[int, int] | None:
    """The slide's level-0 ``(width, height)`` from coords attributes, or ``None``;
    :class:`LabelInputError` naming ``path`` when they are not whole numbers > 0."""
    width = _whole_positive(attrs, "level0_width", Path(path))
    height = _whole_positive(attrs, "level0_height", Path(path))
    if width is not None and height is not None:
        return width, height
    return None


def coords_patch_size(attrs: dict, path: str | os.PathLike) -> int:
    """The ``patch_size_level0`` a coords file records, as an int (TRIDENT writes 1024.0);
    :class:`LabelInputError` naming the file when it is missing, NaN, 0 or not whole."""
    size = _whole_positive(attrs, "patch_size_level0", Path(path))
    if size is None:
        raise LabelInputError(
            f"{path} has no 'patch_size_level0' attribute on 'coords' (TRIDENT writes one; "
            f"attributes: {sorted(attrs)}): {REDO_COORDS}."
        )
    return size


def read_features(path) -> tuple[np.ndarray, np.ndarray | None]:
    """``features`` ``(N, dim)`` of a TRIDENT features file and its ``coords`` ``(N, 2)``
    (``None`` when the file has none), as stored; errors name the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "features" not in f:
                raise LabelInputError(
                    f"{path} has no dataset 'features' (keys: {list(f.keys())}): {REDO_FEATURES}."
                )
            features = f["features"][:]
            coords_level0 = f["coords"][:] if "coords" in f else None
    except OSError as exc:
        raise LabelInputError(
            f"cannot read features file {path}: {exc}. The file is empty, truncated or not an "
            f"h5 file: {REDO_FEATURES}."
        ) from exc
    return features, coords_level0


_MEMORY_FILES = itertools.count()


def _h5_bytes(fill: Callable[[h5py.File], None]) -> bytes:
    """The bytes of an h5 file made in memory by ``fill(file)``: the same bytes h5py writes
    to disk, without touching the disk (h5py crashes, not raises, when a disk fills up)."""
    name = f"mil-book-{os.getpid()}-{next(_MEMORY_FILES)}.h5"
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        fill(f)
        f.flush()
        return f.id.get_file_image()


def _save_h5(path: str | os.PathLike, assets: dict, attributes: dict) -> None:
    """Write datasets as TRIDENT does (one chunk per row, resizable first axis), each with
    its own attributes and none on the file; atomically."""

    def fill(f: h5py.File) -> None:
        for key, data in assets.items():
            dataset = f.create_dataset(
                key,
                data=data,
                chunks=(1,) + data.shape[1:] if len(data) else None,
                maxshape=(None,) + data.shape[1:],
            )
            dataset.attrs.update(attributes.get(key, {}))

    data = _h5_bytes(fill)
    with atomic_path(path) as tmp:
        write_bytes(tmp, data, what=Path(path).name)


def save_coords(path: str | os.PathLike, coords_level0: np.ndarray, attrs: dict) -> None:
    """Write ``<slide>_patches.h5``: dataset ``coords`` int64 ``(n_patches, 2)`` with ``attrs``."""
    coords_level0 = np.asarray(coords_level0, dtype=np.int64).reshape(-1, 2)
    _save_h5(path, {"coords": coords_level0}, {"coords": attrs})


def save_features(
    path: str | os.PathLike,
    features: np.ndarray,
    coords_level0: np.ndarray,
    coords_attrs: dict,
    encoder_name: str,
) -> None:
    """Write ``features_<encoder>/<slide>.h5``: ``features`` ``(n_patches, dim)`` and ``coords``."""
    if len(features) != len(coords_level0):
        raise ValueError(f"{len(features)} feature rows but {len(coords_level0)} coords")
    path = Path(path)
    _save_h5(
        path,
        {"features": np.asarray(features), "coords": np.asarray(coords_level0, dtype=np.int64)},
        {
            # as TRIDENT: on the features dataset, not on the file
            "features": {
                "name": coords_attrs["name"],
                "savetodir": str(path.parent),
                "encoder": encoder_name,
            },
            "coords": coords_attrs,
        },
    )


# --------------------------------------------------------------------------------------------
# patch labels (this book's h5 files)


def read_patch_labels(path) -> np.ndarray:
    """The ``patch_labels`` of ``patch_labels/<name>.h5``: ``(N,)`` int64, one per coords row."""
    labels, _ = _read_dataset(Path(path), "patch_labels", "patch labels file")
    labels = labels.reshape(-1)
    if not np.isin(labels, (0, 1)).all():  # checked before the cast: 0.7 must not become 0
        raise LabelInputError(
            f"{path}: patch labels must be 0 or 1, found {np.unique(labels)[:10]}"
        )
    return labels.astype(np.int64)


def read_tumor_fraction(path) -> np.ndarray | None:
    """The ``tumor_fraction`` of ``patch_labels/<name>.h5`` ``(N,)`` float64 in [0, 1], or
    ``None`` when the file has none (labels made by other tools)."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if "tumor_fraction" not in f:
                return None
            fractions = np.asarray(f["tumor_fraction"][:], dtype=np.float64).reshape(-1)
    except OSError as exc:
        raise LabelInputError(f"cannot read patch labels file {path}: {exc}") from exc
    if not (np.isfinite(fractions) & (fractions >= 0) & (fractions <= 1)).all():
        raise LabelInputError(f"{path}: tumor_fraction must hold fractions in [0, 1].")
    return fractions


def write_patch_labels(
    path, labels: np.ndarray, fractions: np.ndarray | None = None, attrs: dict | None = None
) -> None:
    """Write ``patch_labels`` (int64, ``(N,)``) to an h5 file atomically (tmp file + rename).

    Arguments:
        path: Output file, ``<save_dir>/<name>.h5``; its folder is created.
        labels: ``(N,)`` 0/1 labels, one per row of the coords file, same order.
        fractions: Optional ``(N,)`` tumor fractions, stored as ``tumor_fraction`` (float32).
        attrs: Optional attributes stored on ``patch_labels`` (e.g. threshold, source).
    """
    path = Path(path)
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must have shape (N,), got {labels.shape}.")
    if fractions is not None and np.shape(fractions) != labels.shape:
        raise ValueError(f"fractions {np.shape(fractions)} and labels {labels.shape} differ.")
    with atomic_path(path) as tmp:
        write_patch_labels_h5(tmp, labels, fractions, attrs)


def write_patch_labels_h5(path, labels, fractions=None, attrs: dict | None = None) -> None:
    """Write a patch-labels h5 file straight to ``path`` (not atomic: see
    :func:`write_patch_labels`); the caller checks shapes. A failed write (a full disk)
    raises ``OSError`` and leaves no file at ``path``."""

    def fill(f: h5py.File) -> None:
        dataset = f.create_dataset("patch_labels", data=np.asarray(labels).astype(np.int64))
        for k, v in (attrs or {}).items():
            dataset.attrs[k] = v
        if fractions is not None:
            f.create_dataset("tumor_fraction", data=np.asarray(fractions, dtype=np.float32))

    write_bytes(path, _h5_bytes(fill), what=f"patch labels {Path(path).name}")


def patch_labels_nbytes(n_patches: int) -> int:
    """About the size of a patch-labels file of ``n_patches`` (labels, fractions and h5
    bookkeeping), for a free-space check before writing."""
    return 12 * int(n_patches) + 8192


def is_patch_labels_file(path) -> bool:
    """Whether ``path`` is an h5 file holding this book's patch labels and nothing else
    (``patch_labels``, and ``tumor_fraction`` when present): the only kind of existing file
    ``helpers.labels`` may replace."""
    try:
        with h5py.File(path, "r") as f:
            keys = set(f.keys())
    except OSError:
        return False
    return "patch_labels" in keys and keys <= PATCH_LABEL_KEYS


# --------------------------------------------------------------------------------------------
# label CSVs


def _read_csv_text(csv_path: Path) -> pd.DataFrame:
    """The CSV as stripped text, with columns ``wsi_name`` and ``wsi_label`` checked present."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"labels CSV not found: {csv_path}")
    try:
        df = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise LabelInputError(
            f"labels CSV {csv_path} is empty: it needs a header wsi_name,wsi_label and one row "
            "per slide."
        ) from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise LabelInputError(f"cannot read labels CSV {csv_path}: {exc}") from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = {"wsi_name", "wsi_label"} - set(df.columns)
    if missing:
        raise LabelInputError(
            f"{csv_path} needs columns wsi_name,wsi_label; missing {sorted(missing)} "
            f"(has {list(df.columns)})."
        )
    if df.empty:
        raise LabelInputError(f"labels CSV {csv_path} has a header but no rows (no slide).")
    return df


def _without_slide_extension(name: str) -> str:
    """``normal_001.tif`` -> ``normal_001`` (TRIDENT names its files by the slide's stem);
    only a slide extension (:data:`helpers.layout.WSI_EXTENSIONS`) goes, so a name with other
    dots (``TCGA-...-DX1.2C0E04A1``) stays whole."""
    for ext in WSI_EXTENSIONS:
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return name


def read_labels_csv(csv_path) -> pd.DataFrame:
    """A slide-labels CSV (``wsi_name,wsi_label``), checked row by row.

    Names are stripped of surrounding spaces and of a slide extension (``normal_001.tif``
    names the slide ``normal_001``, as TRIDENT names its files); names of digits only stay
    text (``"00123"``).

    Raises :class:`LabelInputError` (naming the file, and the lines at fault) for an empty
    file, a file with a header but no rows, missing columns, blank names, names listed
    twice, and labels that are blank or not 0/1; ``FileNotFoundError`` when it is missing.

    Returns:
        The table with ``wsi_name`` as ``str`` and ``wsi_label`` as ``int`` (0 or 1).
    """
    csv_path = Path(csv_path)
    df = _read_csv_text(csv_path)
    names = df["wsi_name"].str.strip().map(_without_slide_extension)
    text = df["wsi_label"].str.strip()
    value = pd.to_numeric(text, errors="coerce")
    line = df.index + 2  # 1-based, after the header

    def rows(mask) -> str:
        shown = [
            f"line {n}: {nm or '(blank name)'},{lb or '(blank label)'}"
            for n, nm, lb in zip(line[mask][:MAX_SHOWN], names[mask], text[mask], strict=False)
        ]
        more = int(mask.sum()) - len(shown)
        return "; ".join(shown) + (f"; ... and {more} more" if more > 0 else "")

    blank = names == ""
    if blank.any():
        raise LabelInputError(f"{csv_path}: wsi_name is blank on {rows(blank)}.")
    bad = ~value.isin([0, 1])
    if bad.any():
        raise LabelInputError(
            f"{csv_path}: wsi_label must be 0 (normal) or 1 (tumor); bad {rows(bad)}."
        )
    dup = names.duplicated(keep=False)
    if dup.any():
        raise LabelInputError(f"{csv_path}: names listed more than once: {rows(dup)}.")
    return pd.DataFrame({"wsi_name": names.astype(str), "wsi_label": value.astype(int)})


# --------------------------------------------------------------------------------------------
# slides and thumbnails


def open_slide(path_or_slide, what: str = "slide"):
    """``(slide, opened_here)``: an ``openslide.OpenSlide`` for a path, or the object itself.

    A missing file raises ``FileNotFoundError`` and an unreadable one :class:`LabelInputError`,
    both naming ``what`` (``"slide"``, ``"mask"``). ``opened_here`` tells the caller whether
    it must close the slide (it did not own an object it was given)::

        slide, opened = open_slide(path)
        try:
            ...
        finally:
            if opened:
                slide.close()
    """
    import openslide

    if isinstance(path_or_slide, openslide.AbstractSlide):
        return path_or_slide, False
    path = Path(path_or_slide)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return openslide.OpenSlide(str(path)), True
    except (openslide.OpenSlideError, OSError) as exc:
        raise LabelInputError(f"cannot read {what} {path}: {exc}") from exc


def read_thumbnail(path_or_slide, max_size: int = 1000) -> np.ndarray:
    """The slide's thumbnail (openslide's, longest side ``max_size``): uint8 RGB ``(h, w, 3)``."""
    slide, opened = open_slide(path_or_slide, "slide")
    try:
        return np.asarray(slide.get_thumbnail((max_size, max_size)).convert("RGB"))
    finally:
        if opened:
            slide.close()


def save_thumbnail(slide, path: str | os.PathLike, size: int = 1000) -> None:
    """Save a JPEG thumbnail whose longest side is about ``size`` px (TRIDENT's ``thumbnails/``
    are what ``slide.get_thumbnail`` returns for that size, saved at PIL's default quality;
    this one is saved at quality 90)."""
    thumb = slide.get_thumbnail((size, size)).convert("RGB")
    with atomic_path(path) as tmp:
        thumb.save(tmp, format="JPEG", quality=90)
