"""Patch labels from tumor masks or ASAP XML annotations, for a folder of TRIDENT coords.

A patch is labelled tumor (1) when the fraction of its area covered by tumor is strictly
greater than a threshold (``fraction > threshold``, default 0.5), else normal (0). The
fractions come from :mod:`helpers.coverage` (one low-resolution read of the mask per slide,
or the XML polygons of :mod:`helpers.annotations` rasterised once); the files are read and
written by :mod:`helpers.formats`. This module keeps the labelling rules and the batch
command.

Public API (shapes: ``N`` patches, ``coords_level0`` ``(N, 2)`` level-0 ``(x, y)``)::

    labels_from_fractions(fractions, threshold=0.5) -> (N,) int64
    relaxed_threshold(fractions, threshold=0.5) -> float
    label_slide(coords_level0, patch_size_level0, mask=None, xml_path=None, ...)
        -> (labels, fractions, source)
    label_folder(csv_path, coords_dir, save_dir, masks_dir=None, annotations_dir=None, ...)
        -> pandas.DataFrame, one row per slide

The tumor fractions (``tumor_fraction_from_mask``, ``tumor_fraction_from_xml``) and the file
readers and writers (``read_coords``, ``read_labels_csv``, ``write_patch_labels``,
``read_polygons``) are importable from here too, under the names chapters know.

Command line (the earlier tutorial's arguments)::

    python -m helpers.labels --csv_path wsi_labels.csv --masks_dir masks \\
        --coords_dir .../20x_512px_0px_overlap/patches \\
        --save_dir .../20x_512px_0px_overlap/patch_labels \\
        [--patch_size 1024 --patch_level 0] [--annotations_dir annotations] [--threshold 0.5]

Without ``--patch_size`` each slide's patch side is the ``patch_size_level0`` its coords file
records, so one run labels a cohort that mixes patch sizes (40x and 20x slides, say).
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from helpers.annotations import (
    EXCLUDE_GROUPS,
    TUMOR_GROUPS,
    annotation_groups,
    read_polygons,
)
from helpers.coverage import (
    MIN_PATCH_PX,
    MIN_PATCH_PX_XML,
    check_mask_size,
    mask_values,
    tumor_fraction_from_mask,
    tumor_fraction_from_xml,
    tumor_fraction_per_patch,
)
from helpers.fileio import require_free_space
from helpers.formats import (
    LabelInputError,
    check_coords_spacing,
    is_patch_labels_file,
    level0_size,
    patch_labels_nbytes,
    read_coords,
    read_labels_csv,
    write_patch_labels,
    write_patch_labels_h5,
)
from helpers.formats.h5 import MAX_SHOWN
from helpers.layout import WSI_EXTENSIONS, annotation_file, coords_file, mask_file
from helpers.progress import progress_bar
from helpers.slide import open_slide

__all__ = [
    "DEFAULT_THRESHOLD",
    "TUMOR_GROUPS",
    "EXCLUDE_GROUPS",
    "MIN_PATCH_PX",
    "MIN_PATCH_PX_XML",
    "LabelInputError",
    "tumor_fraction_from_mask",
    "tumor_fraction_from_xml",
    "tumor_fraction_per_patch",
    "labels_from_fractions",
    "relaxed_threshold",
    "label_slide",
    "label_folder",
    "read_coords",
    "read_labels_csv",
    "read_polygons",
    "mask_values",
    "write_patch_labels",
    "summary_line",
    "main",
]
DEFAULT_THRESHOLD = 0.5


# --------------------------------------------------------------------------------------------
# labels


def labels_from_fractions(
    fractions: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> np.ndarray:
    """0/1 patch labels: 1 where ``fraction > threshold`` (strictly greater).

    Arguments:
        fractions: ``(N,)`` tumor fractions in ``[0, 1]``.
        threshold: A patch is tumor when more than this fraction of it is tumor.

    Returns:
        labels: ``(N,)`` int64.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}.")
    return (fractions > threshold).astype(np.int64)


def relaxed_threshold(
    fractions: np.ndarray, threshold: float = DEFAULT_THRESHOLD, min_threshold: float = 1e-3
) -> float:
    """Halve ``threshold`` until at least one patch is positive (the earlier script's rule).

    Returns ``threshold`` unchanged when a patch already passes it, and stops at
    ``min_threshold`` (the returned value may then still give no positive patch).
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    t = float(threshold)
    while len(fractions) and not np.any(fractions > t) and t / 2 >= min_threshold:
        t /= 2
    return t


def label_slide(
    coords_level0: np.ndarray,
    patch_size_level0: int,
    mask=None,
    xml_path=None,
    threshold: float = DEFAULT_THRESHOLD,
    tumor_value: int = 2,
    level0_size: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Labels of one tumor slide from its mask (preferred) or its XML annotations.

    Raises :class:`LabelInputError` when no patch is tumor because the input does not mark
    tumor the expected way: a mask with no ``tumor_value`` pixel but other non-zero values
    (a binary mask where tumor is 1, say), or an XML file without a tumor annotation.

    Returns:
        ``(labels (N,) int64, fractions (N,) float64, source)`` with ``source`` ``"mask"`` or
        ``"xml"``.
    """
    if mask is not None:
        fractions = tumor_fraction_from_mask(
            mask, coords_level0, patch_size_level0, tumor_value, level0_size=level0_size
        )
        source = "mask"
        if len(fractions) and not fractions.any():
            _check_tumor_value(mask, patch_size_level0, tumor_value)
    elif xml_path is not None:
        _check_xml_has_tumor(xml_path, level0_size=level0_size)
        fractions = tumor_fraction_from_xml(xml_path, coords_level0, patch_size_level0, level0_size)
        source = "xml"
    else:
        raise LabelInputError("a tumor slide needs a mask or an XML annotation file.")
    return labels_from_fractions(fractions, threshold), fractions, source


def _check_tumor_value(mask, patch_size_level0: int, tumor_value: int) -> None:
    """A tumor slide whose patches hold no ``tumor_value`` pixel: if the mask has no such pixel
    at all but other non-zero values, the value is wrong (a binary mask, tumor = 1?)."""
    counts = mask_values(mask, patch_size_level0)
    if 0 <= tumor_value < 256 and counts[tumor_value]:
        return  # tumor exists, just not under a patch (summary_line lists such slides)
    others = [int(v) for v in np.flatnonzero(counts) if v != 0]
    name = mask if isinstance(mask, (str, os.PathLike)) else "(open slide)"
    _check_single_channel(mask, name, tumor_value)
    if others:
        shown = ", ".join(f"{v} ({counts[v]} px)" for v in others)
        raise LabelInputError(
            f"tumor slide mask {name} holds no pixel of value {tumor_value} (--tumor_value / "
            f"tumor_value) but holds the non-zero value(s) {shown}: pass --tumor_value "
            f"{others[-1]} if {others[-1]} marks tumor (a binary mask uses 1)."
        )
    warnings.warn(f"tumor slide mask {name} is all 0: no tumor pixel.", stacklevel=3)


#: Colours listed when a mask turns out to be a colour image.
MAX_COLOURS = 6


def _check_single_channel(mask, name, tumor_value: int) -> None:
    """Masks are read as one channel (the first): a colour mask (an RGB image whose channels
    differ) would be read wrongly. Raise :class:`LabelInputError` naming its colours and how
    to turn it into a mask the labels read (its coarsest level is looked at)."""
    slide, opened = open_slide(mask, "mask")
    try:
        level = slide.level_count - 1
        rgba = np.asarray(slide.read_region((0, 0), level, slide.level_dimensions[level]))
    finally:
        if opened:
            slide.close()
    rgb = rgba[..., :3].reshape(-1, 3)
    if (rgb == rgb[:, :1]).all():
        return  # grey levels: the first channel is the value
    colours, counts = np.unique(rgb, axis=0, return_counts=True)
    order = np.argsort(-counts)[:MAX_COLOURS]
    shown = ", ".join(
        f"{tuple(int(c) for c in colours[i])} ({counts[i] / counts.sum():.1%})" for i in order
    )
    more = f" and {len(colours) - len(order)} more" if len(colours) > len(order) else ""
    example = tuple(int(c) for c in colours[order[min(1, len(order) - 1)]])
    raise LabelInputError(
        f"tumor slide mask {name} is a colour image (RGB), but masks are read as one channel "
        f"of values (CAMELYON16's: 0 background, {tumor_value} tumour); its colours (share of "
        f"the pixels): {shown}{more}. Pick the tumour colour and save a one-channel mask with "
        f"tumour = {tumor_value}, e.g. for {example}: mask = (rgb == {example}).all(-1) * "
        f"{tumor_value} (uint8, the same size and pyramid), then label again."
    )


#: Annotation vertices beyond this many level-0 px from 0 are refused when the slide's size
#: is unknown (no slide is 16 million px wide; rasterising overflows int32 further out).
MAX_VERTEX_LEVEL0 = 1 << 24


def _check_polygons(xml_path, polygons: list[np.ndarray], level0_size) -> None:
    """Every vertex must be a finite number, and lie within a slide's width of the slide
    (``level0_size`` known) or within :data:`MAX_VERTEX_LEVEL0` of 0; else a
    :class:`LabelInputError` naming the file (NaN, inf or 1e10 would rasterise to nothing)."""
    if not polygons:
        return
    vertices = np.concatenate(polygons)
    bad = ~np.isfinite(vertices).all(axis=1)
    if bad.any():
        raise LabelInputError(
            f"annotation file {xml_path}: {int(bad.sum())} vertices are not finite numbers "
            f"(e.g. X={vertices[bad][0, 0]}, Y={vertices[bad][0, 1]}): fix or re-export the "
            "annotations."
        )
    if level0_size is not None:
        w, h = level0_size
        low, high = np.array([-w, -h]), np.array([2 * w, 2 * h])
        extent = f"the slide ({w}x{h} level-0 px)"
    else:
        low, high = -MAX_VERTEX_LEVEL0, MAX_VERTEX_LEVEL0
        extent = f"any slide (|X|, |Y| <= {MAX_VERTEX_LEVEL0})"
    far = ((vertices < low) | (vertices > high)).any(axis=1)
    if far.any():
        x, y = vertices[far][0]
        raise LabelInputError(
            f"annotation file {xml_path}: {int(far.sum())} vertices lie far beyond {extent}, "
            f"e.g. X={x:g}, Y={y:g}: is it the annotation of another slide, or in another unit "
            "than level-0 pixels? Fix or re-export the annotations."
        )


def _check_xml_has_tumor(
    xml_path, tumor_groups: Sequence[str] = TUMOR_GROUPS, level0_size=None
) -> None:
    """An annotation file of a tumor slide must hold a tumor polygon (name the groups it has),
    and its vertices must be usable coordinates (see :func:`_check_polygons`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tumor, exclude = read_polygons(xml_path, tumor_groups)
    _check_polygons(xml_path, tumor + exclude, level0_size)
    if tumor:
        return
    groups = annotation_groups(xml_path)
    raise LabelInputError(
        f"annotation file {xml_path} has no tumor polygon (groups found: "
        f"{groups or 'no annotation at all'}; tumor groups are {list(tumor_groups)}): the "
        "slide would get no tumor patch."
    )


def _check_tumor_source(mask_path, xml_path, level0_size) -> None:
    """Open the mask (and compare its size with the slide's) or parse the XML, reading no pixels."""
    if mask_path is not None:
        slide, _ = open_slide(mask_path, "mask")
        try:
            check_mask_size(slide, level0_size, mask_path)
        finally:
            slide.close()
    if xml_path is not None:
        _check_xml_has_tumor(xml_path, level0_size=level0_size)


def _mask_extent_problem(
    mask_path, coords_level0: np.ndarray, patch_size_level0: int
) -> str | None:
    """Without the slide's size: patches lying wholly beyond the mask betray a wrong mask."""
    if mask_path is None or not len(coords_level0):
        return None
    slide, _ = open_slide(mask_path, "mask")
    try:
        width, height = slide.dimensions
    finally:
        slide.close()
    outside = (coords_level0[:, 0] >= width) | (coords_level0[:, 1] >= height)
    if outside.any():
        x, y = coords_level0[np.flatnonzero(outside)[0]]
        return (
            f"mask {mask_path} is {width}x{height} at level 0 but {int(outside.sum())} patches "
            f"lie beyond it (e.g. at {x},{y}): is it the mask of another slide?"
        )
    return None


def _slide_size(wsi_dir: Path, name: str) -> tuple[int, int]:
    """Level-0 ``(width, height)`` of ``<wsi_dir>/<name>.<ext>``."""
    for ext in WSI_EXTENSIONS:
        path = wsi_dir / f"{name}{ext}"
        if path.is_file():
            slide, _ = open_slide(path, "slide")
            try:
                return tuple(slide.dimensions)
            finally:
                slide.close()
    raise FileNotFoundError(f"no slide {name}.* in {wsi_dir} (looked for {WSI_EXTENSIONS})")


# --------------------------------------------------------------------------------------------
# a folder of slides


@dataclass
class _Folders:
    """The input folders of :func:`label_folder`, checked to exist."""

    coords: Path
    masks: Path | None
    annotations: Path | None
    wsi: Path | None

    @classmethod
    def checked(cls, coords_dir, masks_dir, annotations_dir, wsi_dir) -> _Folders:
        coords = Path(coords_dir)
        if not coords.is_dir():
            raise FileNotFoundError(f"coords folder not found: {coords}")
        folders = cls(
            coords,
            *(Path(d) if d is not None else None for d in (masks_dir, annotations_dir, wsi_dir)),
        )
        for folder, what in (
            (folders.masks, "masks"),
            (folders.annotations, "annotations"),
            (folders.wsi, "wsi"),
        ):
            if folder is not None and not folder.is_dir():
                raise FileNotFoundError(f"{what} folder not found: {folder}")
        return folders


@dataclass
class _SlideInput:
    """One slide of the CSV, checked, ready to label."""

    name: str
    label: int
    coords_level0: np.ndarray
    patch_size_level0: int
    level0_size: tuple[int, int] | None
    mask_path: Path | None
    xml_path: Path | None


def _patch_size_level0(patch_size: int | None, patch_level: int) -> int | None:
    """``patch_size * 2**patch_level`` (pyramids halving per level), or ``None`` (each coords
    file's own ``patch_size_level0``) when ``patch_size`` is ``None``."""
    if patch_size is not None and (
        isinstance(patch_size, bool) or int(patch_size) != patch_size or patch_size <= 0
    ):
        raise LabelInputError(f"--patch_size must be a whole number > 0, got {patch_size}.")
    if isinstance(patch_level, bool) or int(patch_level) != patch_level or patch_level < 0:
        raise LabelInputError(f"--patch_level must be a whole number >= 0, got {patch_level}.")
    if patch_size is None:
        if patch_level:
            raise LabelInputError(
                "--patch_level needs --patch_size; without it each coords file's "
                "patch_size_level0 is used."
            )
        return None
    return int(patch_size) * 2 ** int(patch_level)


def _file_patch_size(attrs: dict, coords_path: Path) -> int:
    """The ``patch_size_level0`` a coords file records (TRIDENT writes it as a float)."""
    value = attrs.get("patch_size_level0")
    if value is None or float(value) != int(float(value)) or float(value) <= 0:
        raise LabelInputError(
            f"{coords_path.name} records no whole patch_size_level0 (attributes: "
            f"{sorted(attrs)}): pass --patch_size and --patch_level."
        )
    return int(float(value))


def _tumor_source(name: str, label: int, folders: _Folders):
    """``(mask_path, xml_path, problem)`` of one slide: the mask when there is one, else the
    XML; both ``None`` for a normal slide; ``problem`` names what a tumor slide lacks."""
    if label != 1:
        return None, None, None
    if folders.masks is not None and (folders.masks / mask_file(name)).is_file():
        return folders.masks / mask_file(name), None, None
    if folders.annotations is not None and (folders.annotations / annotation_file(name)).is_file():
        return None, folders.annotations / annotation_file(name), None
    looked = [str(d) for d in (folders.masks, folders.annotations) if d is not None]
    return (
        None,
        None,
        (
            f"{name}: tumor slide with neither {mask_file(name)} nor {annotation_file(name)} "
            f"(looked in {looked or 'no folder: pass masks_dir or annotations_dir'})"
        ),
    )


def _read_slide_input(
    name: str, label: int, coords_path: Path, sources: tuple, folders: _Folders, size: int | None
) -> _SlideInput:
    """Read and check one slide's coords and tumor source (no mask pixels are read)."""
    mask_path, xml_path = sources
    attrs, coords_level0 = read_coords(coords_path, size)
    if size is None:
        size = _file_patch_size(attrs, coords_path)
        check_coords_spacing(coords_level0, size, attrs, coords_path)
    slide_size = level0_size(attrs, coords_path)
    if slide_size is None and folders.wsi is not None:
        slide_size = _slide_size(folders.wsi, name)
    _check_tumor_source(mask_path, xml_path, slide_size)
    if slide_size is None and mask_path is not None:
        extent = _mask_extent_problem(mask_path, coords_level0, size)
        if extent:
            raise LabelInputError(extent)
    return _SlideInput(name, label, coords_level0, size, slide_size, mask_path, xml_path)


def _load_inputs(
    table: pd.DataFrame, folders: _Folders, patch_size_level0: int | None
) -> list[_SlideInput]:
    """Check every slide's inputs before anything is written; report every problem at once."""
    loaded, problems, unchecked = [], [], []
    for name, label in zip(table["wsi_name"], table["wsi_label"], strict=True):
        coords_path = folders.coords / coords_file(name)
        if not coords_path.is_file():
            problems.append(f"{name}: no coords file {coords_path}")
            continue
        mask_path, xml_path, missing = _tumor_source(name, label, folders)
        if missing:
            problems.append(missing)
        try:
            slide = _read_slide_input(
                name, label, coords_path, (mask_path, xml_path), folders, patch_size_level0
            )
        except (LabelInputError, FileNotFoundError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        if slide.level0_size is None and mask_path is not None:
            unchecked.append(name)
        loaded.append(slide)
    _raise_problems(problems, len(table))
    if unchecked:
        warnings.warn(
            f"the coords of {len(unchecked)} tumor slide(s) ({', '.join(unchecked[:MAX_SHOWN])}"
            f"{', ...' if len(unchecked) > MAX_SHOWN else ''}) have no level0_width/height: "
            "their masks were not checked against the slides' size; pass --wsi_dir (wsi_dir=) "
            "to check them.",
            stacklevel=3,
        )
    return loaded


def _label_one(slide: _SlideInput, threshold: float, relax: bool, tumor_value: int):
    """``(labels, fractions, source, threshold used, relaxed)`` of one slide."""
    n = len(slide.coords_level0)
    if slide.label == 0:
        return np.zeros(n, np.int64), np.zeros(n, np.float64), "none", threshold, False
    labels, fractions, source = label_slide(
        slide.coords_level0,
        slide.patch_size_level0,
        mask=slide.mask_path,
        xml_path=slide.xml_path,
        threshold=threshold,
        tumor_value=tumor_value,
        level0_size=slide.level0_size,
    )
    if not (relax and n and labels.sum() == 0):
        return labels, fractions, source, threshold, False
    relaxed = relaxed_threshold(fractions, threshold)
    labels = labels_from_fractions(fractions, relaxed)
    tqdm.write(
        f"warning: {slide.name}: no patch above threshold {threshold}; relaxed to {relaxed:g} "
        f"({int(labels.sum())} positive patches).",
        file=sys.stderr,
    )
    return labels, fractions, source, relaxed, True


#: Columns of the table :func:`label_folder` returns.
TABLE_COLUMNS = ["name", "wsi_label", "n_patches", "n_positive", "source", "threshold", "relaxed"]


def _label_all(slides: list[_SlideInput], save_dir: Path, options: dict, n_csv: int, progress):
    """Label every slide in memory: ``(table rows, [(path, labels, fractions, attrs)])``."""
    rows, outputs, problems = [], [], []
    for slide in progress_bar(slides, desc="patch labels", unit="slide", disable=not progress):
        try:
            labels, fractions, source, used, relaxed = _label_one(slide, **options)
        except LabelInputError as exc:
            problems.append(f"{slide.name}: {exc}")
            continue
        attrs = {"threshold": used, "source": source, "patch_size_level0": slide.patch_size_level0}
        outputs.append((save_dir / f"{slide.name}.h5", labels, fractions, attrs))
        n_positive = int(labels.sum())
        row = (slide.name, int(slide.label), len(labels), n_positive, source, used, relaxed)
        rows.append(dict(zip(TABLE_COLUMNS, row, strict=True)))
    _raise_problems(problems, n_csv)
    return rows, outputs


def label_folder(
    csv_path,
    coords_dir,
    save_dir,
    masks_dir=None,
    annotations_dir=None,
    patch_size: int | None = None,
    patch_level: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    relax_threshold: bool = False,
    progress: bool = True,
    tumor_value: int = 2,
    wsi_dir=None,
) -> pd.DataFrame:
    """Write ``<save_dir>/<name>.h5`` (key ``patch_labels``) for every slide of a labels CSV.

    Normal slides (``wsi_label`` 0) get all zeros without reading anything but their coords.
    A tumor slide uses ``<masks_dir>/<name>_mask.tif`` when it exists, else
    ``<annotations_dir>/<name>.xml``. All or nothing: every input is checked and every label
    computed before anything is written; the files are then written to temporary names and
    renamed, and a failure leaves ``save_dir`` as it was.

    Arguments:
        csv_path: CSV with columns ``wsi_name,wsi_label`` (0 normal, 1 tumor).
        coords_dir: TRIDENT ``patches/`` folder holding ``<name>_patches.h5``.
        save_dir: Output folder (created).
        masks_dir, annotations_dir: Where the tumor masks / ASAP XML files are (at least one).
        patch_size, patch_level: Patch side at ``patch_level``; the level-0 side is then
            ``patch_size * 2**patch_level`` for every slide (1024 and 0 for CAMELYON16 at
            20x / 512 px). ``None`` (the default): each slide's ``patch_size_level0`` is the
            one its coords file records, so a cohort may mix patch sizes.
        threshold: A patch is tumor when its tumor fraction is ``> threshold``.
        relax_threshold: For a tumor slide with no patch above ``threshold``, halve the
            threshold until one is (the earlier script did this silently); prints a warning.
        progress: Show a tqdm progress bar.
        tumor_value: Mask value of tumor pixels.
        wsi_dir: Folder of the slides (``<name>.tif`` ...): the mask size is checked against
            the slide when a coords file lacks ``level0_width/height``.

    Returns:
        One row per slide: ``name, wsi_label, n_patches, n_positive, source`` (``mask``,
        ``xml`` or ``none``), ``threshold`` (the one used) and ``relaxed`` (bool).
    """
    patch_size_level0 = _patch_size_level0(patch_size, patch_level)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}.")
    save_dir = Path(save_dir)
    _check_save_dir(save_dir)
    table = read_labels_csv(csv_path)
    _check_existing_outputs(save_dir, list(table["wsi_name"]))
    folders = _Folders.checked(coords_dir, masks_dir, annotations_dir, wsi_dir)
    # 1. check every input before writing anything, and report every problem at once
    slides = _load_inputs(table, folders, patch_size_level0)
    # 2. label every slide (in memory)
    options = {"threshold": float(threshold), "relax": relax_threshold, "tumor_value": tumor_value}
    rows, outputs = _label_all(slides, save_dir, options, len(table), progress)
    # 3. write: every file to a temporary name first, then rename them all
    _write_all(save_dir, outputs)
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def _raise_problems(problems: list[str], n: int) -> None:
    if problems:
        shown = problems[:MAX_SHOWN] + (
            [f"... and {len(problems) - MAX_SHOWN} more"] if len(problems) > MAX_SHOWN else []
        )
        raise LabelInputError(
            f"cannot label {len(problems)} of {n} slides (nothing was written):\n  "
            + "\n  ".join(shown)
        )


def _check_save_dir(save_dir: Path) -> None:
    """``save_dir`` must be a folder (or not exist yet) that this process can write to."""
    if save_dir.exists() and not save_dir.is_dir():
        raise LabelInputError(f"--save_dir {save_dir} is a file, not a folder.")
    probe = save_dir
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise LabelInputError(f"--save_dir {save_dir}: {probe} is a file, not a folder.")
    if not os.access(probe, os.R_OK | os.W_OK | os.X_OK):
        raise LabelInputError(
            f"--save_dir {save_dir}: {probe} is not readable and writable by this user; "
            "choose another folder."
        )


def _check_existing_outputs(save_dir: Path, names: list[str]) -> None:
    """Only patch-labels files may be replaced: any other file at ``<save_dir>/<name>.h5``
    (a TRIDENT features file, when ``--save_dir`` names a ``features_<encoder>`` folder)
    stops the run before anything is written."""
    if not save_dir.is_dir():
        return
    foreign = [
        save_dir / f"{n}.h5"
        for n in names
        if (save_dir / f"{n}.h5").exists() and not is_patch_labels_file(save_dir / f"{n}.h5")
    ]
    if foreign:
        shown = ", ".join(p.name for p in foreign[:MAX_SHOWN])
        more = f" and {len(foreign) - MAX_SHOWN} more" if len(foreign) > MAX_SHOWN else ""
        raise LabelInputError(
            f"--save_dir {save_dir} holds {len(foreign)} file(s) that are not patch labels "
            f"({shown}{more}) and would be replaced: nothing was written. Is it a TRIDENT "
            "features or patches folder? Pass the patch_labels folder of the job instead "
            "(<job_dir>/<patch_dir>/patch_labels), or move those files away."
        )


def _write_all(save_dir: Path, outputs: list) -> None:
    """Write every ``(path, labels, fractions, attrs)`` or none (tmp files, then renames),
    after checking the disk has room for them all."""
    written: list[tuple[Path, Path]] = []
    try:
        needed = sum(patch_labels_nbytes(len(labels)) for _, labels, _, _ in outputs)
        require_free_space(save_dir, needed, f"the patch labels of {len(outputs)} slides")
        save_dir.mkdir(parents=True, exist_ok=True)
        for path, labels, fractions, attrs in outputs:
            tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
            written.append((tmp, path))
            write_patch_labels_h5(tmp, labels, fractions, attrs)
    except OSError as exc:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)
        raise LabelInputError(
            f"cannot write to --save_dir {save_dir}: {exc} (nothing was written)."
        ) from exc
    for tmp, path in written:
        os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# command line


def summary_line(table: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> str:
    """One line describing a :func:`label_folder` result, naming tumor slides left empty."""
    counts = table["source"].value_counts()
    parts = [
        f"{len(table)} slides labelled ({int(counts.get('mask', 0))} from masks, "
        f"{int(counts.get('xml', 0))} from XML, {int(counts.get('none', 0))} normal), "
        f"{int(table['n_positive'].sum())} positive patches of {int(table['n_patches'].sum())}"
    ]
    tumor = table[table["wsi_label"] == 1]
    relaxed = tumor[tumor["relaxed"]]
    empty = tumor[tumor["n_positive"] == 0]
    if len(relaxed):
        parts.append(
            "threshold relaxed for "
            + ", ".join(
                f"{n} ({t:g})" for n, t in zip(relaxed["name"], relaxed["threshold"], strict=True)
            )
        )
    if len(empty):
        parts.append(f"tumor slides with no patch above {threshold:g}: " + ", ".join(empty["name"]))
    return "; ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m helpers.labels",
        description="Write <save_dir>/<name>.h5 (key patch_labels) for every slide of a CSV, "
        "from tumor masks or ASAP XML annotations, reading each mask once at low resolution.",
    )
    p.add_argument("--csv_path", required=True, help="CSV with columns wsi_name,wsi_label")
    p.add_argument("--masks_dir", default=None, help="folder of <name>_mask.tif")
    p.add_argument("--coords_dir", required=True, help="TRIDENT patches/ folder")
    p.add_argument("--save_dir", required=True, help="output folder (patch_labels/)")
    p.add_argument(
        "--patch_size",
        type=int,
        default=None,
        help="patch side at --patch_level, the same for every slide (default: each coords "
        "file's patch_size_level0)",
    )
    p.add_argument(
        "--patch_level",
        type=int,
        default=0,
        help="level of --patch_size; the level-0 side is patch_size * 2**patch_level",
    )
    p.add_argument("--annotations_dir", default=None, help="folder of <name>.xml (ASAP)")
    p.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="a patch is tumor when its tumor fraction is > threshold",
    )
    p.add_argument(
        "--relax_threshold",
        action="store_true",
        help="halve the threshold for tumor slides with no positive patch",
    )
    p.add_argument("--tumor_value", type=int, default=2, help="mask value of tumor pixels")
    p.add_argument(
        "--wsi_dir",
        default=None,
        help="folder of the slides: checks each mask's size against its slide when the coords "
        "files lack level0_width/height",
    )
    p.add_argument("--no_progress", action="store_true", help="no progress bar")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.masks_dir is None and args.annotations_dir is None:
        print(
            "warning: neither --masks_dir nor --annotations_dir given: only normal slides "
            "can be labelled.",
            file=sys.stderr,
        )
    try:
        table = label_folder(
            args.csv_path,
            args.coords_dir,
            args.save_dir,
            masks_dir=args.masks_dir,
            annotations_dir=args.annotations_dir,
            patch_size=args.patch_size,
            patch_level=args.patch_level,
            threshold=args.threshold,
            relax_threshold=args.relax_threshold,
            progress=not args.no_progress,
            tumor_value=args.tumor_value,
            wsi_dir=args.wsi_dir,
        )
    except (LabelInputError, FileNotFoundError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_line(table, args.threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
