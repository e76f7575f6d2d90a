"""A folder of slides labelled at once: every input checked before anything is written,
then every patch-labels file written or none (:func:`label_folder`)."""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from helpers.fileio import require_free_space
from helpers.formats import (
    LabelInputError,
    check_coords_spacing,
    is_patch_labels_file,
    level0_size,
    patch_labels_nbytes,
    read_coords,
    read_labels_csv,
    write_patch_labels_h5,
)
from helpers.formats.h5 import MAX_SHOWN
from helpers.labels.rules import (
    DEFAULT_THRESHOLD,
    check_tumor_source,
    label_slide,
    labels_from_fractions,
    mask_extent_problem,
    relaxed_threshold,
    wsi_size,
)
from helpers.layout import annotation_file, coords_file, mask_file
from helpers.progress import progress_bar


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
        slide_size = wsi_size(folders.wsi, name)
    check_tumor_source(mask_path, xml_path, slide_size)
    if slide_size is None and mask_path is not None:
        extent = mask_extent_problem(mask_path, coords_level0, size)
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
