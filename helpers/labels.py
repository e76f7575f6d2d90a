"""Patch labels from tumor masks or ASAP XML annotations, without one read per patch.

A patch is labelled tumor (1) when the fraction of its area covered by tumor is strictly
greater than a threshold (``fraction > threshold``, default 0.5), else normal (0).

The slow way reads a ``patch_size_level0 x patch_size_level0`` window of the level-0 mask for
every patch. Here the mask is read once, at a low-resolution pyramid level where a patch still
spans at least ``min_patch_px`` pixels (64 by default), or the XML polygons are rasterised once
at that scale; a summed-area table then gives the tumor area of every patch with four look-ups.
The map is processed in horizontal bands, so memory stays bounded on gigapixel slides.

Public API (shapes: ``N`` patches)::

    tumor_fraction_from_mask(mask, coords, patch_size_level0, tumor_value=2, level=None)
        -> (N,) float64 in [0, 1]
    tumor_fraction_from_xml(xml_path, coords, patch_size_level0, level0_size=None)
        -> (N,) float64 in [0, 1]
    labels_from_fractions(fractions, threshold=0.5) -> (N,) int64
    label_slide(coords, patch_size_level0, mask=None, xml_path=None, ...) -> (labels, fractions)
    label_folder(csv_path, coords_dir, save_dir, masks_dir=None, annotations_dir=None, ...)
        -> pandas.DataFrame, one row per slide
    read_coords(path, patch_size_level0=None) -> ((N, 2) int64, attrs dict)
    write_patch_labels(path, labels, fractions=None, attrs=None)

Command line (the earlier tutorial's arguments)::

    python -m helpers.labels --csv_path wsi_labels.csv --masks_dir masks \\
        --coords_dir .../20x_512px_0px_overlap/patches \\
        --save_dir .../20x_512px_0px_overlap/patch_labels \\
        --patch_size 1024 --patch_level 0 [--annotations_dir annotations] [--threshold 0.5]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from helpers.fileio import atomic_path

__all__ = [
    "DEFAULT_THRESHOLD",
    "TUMOR_GROUPS",
    "EXCLUDE_GROUPS",
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
#: ``PartOfGroup`` values of ASAP annotations that mark tumor (CAMELYON16 uses ``_0``/``_1``).
TUMOR_GROUPS = ("_0", "_1", "Tumor", "tumor", "metastases", "Metastases")
#: ``PartOfGroup`` values that mark exclusion holes inside tumor (CAMELYON16 uses ``_2``).
EXCLUDE_GROUPS = ("_2", "Exclusion", "exclusion")
#: A patch spans at least this many pixels (per side) on the low-resolution map.
MIN_PATCH_PX = 64
#: The same for rasterised XML polygons: cv2.fillPoly also fills the pixels an edge crosses,
#: a bias of about half a pixel along the outline, so polygons get a finer map.
MIN_PATCH_PX_XML = 128
#: Pixels of the low-resolution map held in memory at once (a band of whole rows).
BAND_PIXELS = 16 * 1024 * 1024
#: Problems listed in an error message before "... and N more".
MAX_SHOWN = 5
#: Sub-pixel bits used when rasterising polygons with ``cv2.fillPoly``.
_SHIFT = 4


class LabelInputError(ValueError):
    """Bad input to the label extraction: a missing file, a mismatch, an unreadable file."""


# --------------------------------------------------------------------------------------------
# small utilities


def _check_coords(coords: np.ndarray) -> np.ndarray:
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise LabelInputError(f"coords must have shape (N, 2), got {coords.shape}.")
    if coords.size and not np.issubdtype(coords.dtype, np.integer):
        if not np.all(np.equal(np.mod(coords, 1), 0)):
            raise LabelInputError("coords must be integer level-0 pixel positions.")
    return coords.astype(np.int64, copy=False)


def _open_slide(path_or_slide, what: str = "mask"):
    """An ``openslide.OpenSlide`` for a path (clear errors), or the object itself."""
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


def _choose_level(downsamples: Sequence[float], patch_size_level0: int, min_patch_px: int) -> int:
    """The coarsest level on which a patch still spans ``min_patch_px`` pixels (else 0)."""
    best = 0
    for level, ds in enumerate(downsamples):
        if patch_size_level0 / ds >= min_patch_px - 1e-6:
            best = level
    return best


def _box_fractions(
    read_rows: Callable[[int, int], np.ndarray],
    map_size: tuple[int, int],
    boxes: np.ndarray,
    band_pixels: int = BAND_PIXELS,
) -> np.ndarray:
    """Fraction of each box covered by a binary map, with one summed-area table per band.

    Arguments:
        read_rows: ``read_rows(r0, r1)`` returns rows ``r0:r1`` of the map, shape
            ``(r1 - r0, map_width)``, nonzero where tumor.
        map_size: ``(map_width, map_height)``.
        boxes: ``(N, 4)`` int boxes ``x0, y0, x1, y1`` in map pixels (end exclusive); they may
            extend beyond the map, where the map counts as 0.

    Returns:
        ``(N,)`` float64: covered area / box area.
    """
    n = len(boxes)
    out = np.zeros(n, dtype=np.float64)
    if n == 0:
        return out
    width, height = map_size
    band_rows = max(1, band_pixels // max(width, 1))
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    area = np.maximum((x1 - x0) * (y1 - y0), 1).astype(np.float64)
    cx0, cx1 = np.clip(x0, 0, width), np.clip(x1, 0, width)
    cy0, cy1 = np.clip(y0, 0, height), np.clip(y1, 0, height)
    inside = (cx1 > cx0) & (cy1 > cy0)
    order = np.argsort(cy0[inside], kind="stable")
    idx = np.flatnonzero(inside)[order]
    start = 0
    while start < len(idx):
        r0 = int(cy0[idx[start]])
        stop = start
        r1 = r0
        # grow the band while it stays within band_rows (always take at least one box)
        while stop < len(idx) and (
            stop == start or int(cy1[idx[stop]]) - r0 <= max(band_rows, r1 - r0)
        ):
            r1 = max(r1, int(cy1[idx[stop]]))
            stop += 1
        sel = idx[start:stop]
        band = np.ascontiguousarray(read_rows(r0, r1) != 0, dtype=np.uint8)
        sat = cv2.integral(band)  # (r1 - r0 + 1, width + 1), int32
        by0, by1 = cy0[sel] - r0, cy1[sel] - r0
        bx0, bx1 = cx0[sel], cx1[sel]
        sums = sat[by1, bx1] - sat[by0, bx1] - sat[by1, bx0] + sat[by0, bx0]
        out[sel] = sums / area[sel]
        start = stop
    return out


def _boxes_on_map(
    coords: np.ndarray, patch_size_level0: int, scale: float, origin: tuple[int, int]
) -> np.ndarray:
    """Level-0 patch squares as ``(N, 4)`` int boxes on a map of ``scale`` level-0 px/pixel."""
    ox, oy = origin
    x0 = np.rint((coords[:, 0] - ox) / scale)
    y0 = np.rint((coords[:, 1] - oy) / scale)
    x1 = np.rint((coords[:, 0] + patch_size_level0 - ox) / scale)
    y1 = np.rint((coords[:, 1] + patch_size_level0 - oy) / scale)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# tumor fractions


def tumor_fraction_from_mask(
    mask,
    coords: np.ndarray,
    patch_size_level0: int,
    tumor_value: int = 2,
    level: int | None = None,
    *,
    level0_size: tuple[int, int] | None = None,
    min_patch_px: int = MIN_PATCH_PX,
) -> np.ndarray:
    """Tumor fraction of every patch from a pyramidal mask, read once at a low-resolution level.

    Arguments:
        mask: Path of a pyramidal single-channel mask TIFF (``<name>_mask.tif``) or an open
            ``openslide.OpenSlide`` of it. Pixel value ``tumor_value`` marks tumor.
        coords: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners of the patches.
        patch_size_level0: Patch side in level-0 pixels (1024 for CAMELYON16 at 20x / 512 px).
        tumor_value: Mask value of tumor pixels (2 for the book's masks; 1 for some ASAP masks).
        level: Pyramid level to read. ``None`` picks the coarsest level on which a patch still
            spans ``min_patch_px`` pixels.
        level0_size: ``(width, height)`` of the slide at level 0; when given, a mask of another
            size is rejected.
        min_patch_px: See ``level``.

    Returns:
        fractions: ``(N,)`` float64 in ``[0, 1]``, same order as ``coords``. Parts of a patch
        beyond the mask count as not tumor.
    """
    coords = _check_coords(coords)
    slide, opened = _open_slide(mask, "mask")
    try:
        _check_mask_size(slide, level0_size, mask)
        if len(coords) == 0:
            return np.zeros(0, dtype=np.float64)
        if level is None:
            level = _choose_level(slide.level_downsamples, patch_size_level0, min_patch_px)
        if not 0 <= level < slide.level_count:
            raise LabelInputError(f"level {level} not in the mask (it has {slide.level_count}).")
        ds = float(slide.level_downsamples[level])
        lw, lh = slide.level_dimensions[level]
        # the map is the part of the level under the patches (whole level pixels)
        mx0 = max(int(math.floor(coords[:, 0].min() / ds)), 0)
        my0 = max(int(math.floor(coords[:, 1].min() / ds)), 0)
        mx1 = min(int(math.ceil((coords[:, 0].max() + patch_size_level0) / ds)), lw)
        my1 = min(int(math.ceil((coords[:, 1].max() + patch_size_level0) / ds)), lh)
        width, height = max(mx1 - mx0, 0), max(my1 - my0, 0)
        boxes = _boxes_on_map(coords, patch_size_level0, ds, (0, 0))
        boxes -= np.array([mx0, my0, mx0, my0])

        def read_rows(r0: int, r1: int) -> np.ndarray:
            loc = (int(round(mx0 * ds)), int(round((my0 + r0) * ds)))
            region = np.asarray(slide.read_region(loc, level, (width, r1 - r0)))
            return region[:, :, 0] == tumor_value

        return _box_fractions(read_rows, (width, height), boxes)
    finally:
        if opened:
            slide.close()


def read_polygons(
    xml_path,
    tumor_groups: Sequence[str] = TUMOR_GROUPS,
    exclude_groups: Sequence[str] = EXCLUDE_GROUPS,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Tumor and exclusion polygons of an ASAP XML file.

    Arguments:
        xml_path: ``<ASAP_Annotations>`` file with level-0 coordinates.
        tumor_groups: ``PartOfGroup`` values counted as tumor.
        exclude_groups: ``PartOfGroup`` values that are holes cut out of the tumor.

    Returns:
        ``(tumor, exclude)``: two lists of ``(K, 2)`` float64 level-0 ``(x, y)`` vertices.
        Annotations of any other group are left out with a warning.
    """
    path = Path(xml_path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise LabelInputError(f"cannot read annotation file {path}: {exc}") from exc
    tumor: list[np.ndarray] = []
    exclude: list[np.ndarray] = []
    unknown: set[str] = set()
    for ann in root.iter("Annotation"):
        group = ann.get("PartOfGroup", "")
        pts = []
        for c in ann.iter("Coordinate"):
            try:
                pts.append((float(c.get("Order", len(pts))), float(c.get("X")), float(c.get("Y"))))
            except (TypeError, ValueError) as exc:
                raise LabelInputError(f"bad Coordinate in {path}: {c.attrib}") from exc
        if len(pts) < 3:
            continue  # a dot or a line has no area
        pts.sort(key=lambda p: p[0])
        poly = np.array([p[1:] for p in pts], dtype=np.float64)
        if group in exclude_groups:
            exclude.append(poly)
        elif group in tumor_groups:
            tumor.append(poly)
        else:
            unknown.add(group)
    if unknown:
        warnings.warn(
            f"{path.name}: annotations of group(s) {sorted(unknown)} are neither tumor "
            f"{list(tumor_groups)} nor exclusion {list(exclude_groups)}; left out.",
            stacklevel=2,
        )
    return tumor, exclude


def _fill(img: np.ndarray, polys: list[np.ndarray], value: int, scale: float, origin) -> None:
    """Fill polygons (level-0 vertices) into ``img`` whose pixel ``(0, 0)`` starts at ``origin``.

    Pixel ``i`` of ``img`` covers level-0 pixels ``origin + i*scale ... origin + (i+1)*scale - 1``
    whose centres (cv2 puts pixel centres at integer positions) average to
    ``origin + i*scale + (scale - 1) / 2``; at ``scale`` 1 this is ``cv2.fillPoly`` at level 0.
    """
    if not polys:
        return
    ox, oy = origin
    c = (scale - 1.0) / 2.0
    pts = [
        np.rint(
            np.stack([(p[:, 0] - ox - c) / scale, (p[:, 1] - oy - c) / scale], axis=1)
            * (1 << _SHIFT)
        ).astype(np.int32)
        for p in polys
    ]
    for poly in pts:  # one call each: fillPoly treats the overlap of a list's polygons as a hole
        cv2.fillPoly(img, [poly], int(value), lineType=cv2.LINE_8, shift=_SHIFT)


def tumor_fraction_from_xml(
    xml_path,
    coords: np.ndarray,
    patch_size_level0: int,
    level0_size: tuple[int, int] | None = None,
    *,
    min_patch_px: int = MIN_PATCH_PX_XML,
    tumor_groups: Sequence[str] = TUMOR_GROUPS,
    exclude_groups: Sequence[str] = EXCLUDE_GROUPS,
) -> np.ndarray:
    """Tumor fraction of every patch from ASAP XML polygons, rasterised once at low resolution.

    Tumor polygons (groups ``_0``, ``_1``, ``Tumor``) are filled, then exclusion polygons
    (group ``_2``) are cleared, with ``cv2.fillPoly`` and sub-pixel vertex precision, on a map
    where a patch spans ``min_patch_px`` pixels (a power-of-two fraction of level 0).

    Arguments:
        xml_path: ASAP XML file (level-0 coordinates).
        coords: ``(N, 2)`` int level-0 ``(x, y)`` top-left corners of the patches.
        patch_size_level0: Patch side in level-0 pixels.
        level0_size: ``(width, height)`` of the slide at level 0; parts of patches beyond it
            count as not tumor. ``None``: no clipping.
        min_patch_px: Pixels per patch side on the rasterised map.
        tumor_groups, exclude_groups: See :func:`read_polygons`.

    Returns:
        fractions: ``(N,)`` float64 in ``[0, 1]``, same order as ``coords``.
    """
    coords = _check_coords(coords)
    tumor, exclude = read_polygons(xml_path, tumor_groups, exclude_groups)
    if len(coords) == 0:
        return np.zeros(0, dtype=np.float64)
    if not tumor:
        return np.zeros(len(coords), dtype=np.float64)
    scale = float(2 ** max(int(math.floor(math.log2(patch_size_level0 / min_patch_px))), 0))
    ox = int(coords[:, 0].min())
    oy = int(coords[:, 1].min())
    x_end = int(coords[:, 0].max()) + patch_size_level0
    y_end = int(coords[:, 1].max()) + patch_size_level0
    if level0_size is not None:
        x_end = min(x_end, int(level0_size[0]))
        y_end = min(y_end, int(level0_size[1]))
    width = max(int(math.ceil((x_end - ox) / scale)), 0)
    height = max(int(math.ceil((y_end - oy) / scale)), 0)
    boxes = _boxes_on_map(coords, patch_size_level0, scale, (ox, oy))

    def read_rows(r0: int, r1: int) -> np.ndarray:
        band = np.zeros((r1 - r0, width), dtype=np.uint8)
        origin = (ox, oy + r0 * scale)
        _fill(band, tumor, 1, scale, origin)
        _fill(band, exclude, 0, scale, origin)
        if level0_size is not None:  # pixels past the slide edge are not tumor
            band[:, max(int((level0_size[0] - ox) // scale), 0) :] = 0
            last = int((level0_size[1] - oy) // scale) - r0
            band[max(last, 0) :, :] = 0
        return band

    return _box_fractions(read_rows, (width, height), boxes)


def tumor_fraction_per_patch(
    mask, coords: np.ndarray, patch_size_level0: int, tumor_value: int = 2, progress: bool = False
) -> np.ndarray:
    """The slow reference: one level-0 read of the mask per patch (what the earlier script did).

    Used by the tests and the benchmark to check :func:`tumor_fraction_from_mask`.

    Returns:
        fractions: ``(N,)`` float64, exact at level 0.
    """
    coords = _check_coords(coords)
    slide, opened = _open_slide(mask, "mask")
    try:
        out = np.zeros(len(coords), dtype=np.float64)
        size = (patch_size_level0, patch_size_level0)
        for i, (x, y) in enumerate(tqdm(coords, desc="per-patch mask reads", disable=not progress)):
            patch = np.asarray(slide.read_region((int(x), int(y)), 0, size))[:, :, 0]
            out[i] = np.count_nonzero(patch == tumor_value) / patch.size
        return out
    finally:
        if opened:
            slide.close()


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
    coords: np.ndarray,
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
        fr = tumor_fraction_from_mask(
            mask, coords, patch_size_level0, tumor_value, level0_size=level0_size
        )
        source = "mask"
        if len(fr) and not fr.any():
            _check_tumor_value(mask, patch_size_level0, tumor_value)
    elif xml_path is not None:
        _check_xml_has_tumor(xml_path)
        fr = tumor_fraction_from_xml(xml_path, coords, patch_size_level0, level0_size)
        source = "xml"
    else:
        raise LabelInputError("a tumor slide needs a mask or an XML annotation file.")
    return labels_from_fractions(fr, threshold), fr, source


# --------------------------------------------------------------------------------------------
# files


def read_coords(path, patch_size_level0: int | None = None) -> tuple[np.ndarray, dict]:
    """Coordinates of a TRIDENT ``<name>_patches.h5`` file, checked against the patch size.

    Arguments:
        path: The h5 file, dataset ``coords`` ``(N, 2)`` int64 level-0 ``(x, y)``.
        patch_size_level0: Expected patch side in level-0 pixels. When given, it must equal the
            file's ``patch_size_level0`` attribute (if any), and the patch positions must lie
            on a grid of step ``patch_size_level0 - overlap``.

    Returns:
        ``(coords (N, 2) int64, attrs)`` where ``attrs`` are the attributes of ``coords``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"coords file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if "coords" not in f:
                raise LabelInputError(f"{path} has no dataset 'coords' (keys: {list(f.keys())}).")
            coords = np.asarray(f["coords"][:])
            attrs = {
                k: (v.item() if hasattr(v, "item") else v) for k, v in f["coords"].attrs.items()
            }
    except OSError as exc:
        raise LabelInputError(f"cannot read coords file {path}: {exc}") from exc
    coords = _check_coords(coords)
    if patch_size_level0 is not None:
        _check_spacing(coords, int(patch_size_level0), attrs, path)
    return coords, attrs


def _check_spacing(coords: np.ndarray, p: int, attrs: dict, path: Path) -> None:
    described = ", ".join(
        f"{k}={attrs[k]}"
        for k in ("patch_size", "patch_size_level0", "level0_magnification", "target_magnification")
        if k in attrs
    )
    hint = f" (the h5 attributes give {described})" if described else ""
    if "patch_size_level0" in attrs and int(attrs["patch_size_level0"]) != p:
        raise LabelInputError(
            f"{path.name}: patch_size_level0={p} was asked for but the coords were made with "
            f"patch_size_level0={int(attrs['patch_size_level0'])}{hint}. Pass "
            f"--patch_size {int(attrs['patch_size_level0'])} --patch_level 0."
        )
    step = p - int(attrs.get("overlap", 0) or 0)
    if len(coords) < 2 or step <= 0:
        return
    d = np.concatenate([coords[:, 0] - coords[0, 0], coords[:, 1] - coords[0, 1]])
    g = int(np.gcd.reduce(np.abs(d)))
    if g not in (0, step):
        raise LabelInputError(
            f"{path.name}: the patches are spaced by {g} level-0 px, which does not match "
            f"patch_size_level0={p} (grid step {step}){hint}."
        )


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
        _write_labels_h5(tmp, labels, fractions, attrs)


def _write_labels_h5(path: Path, labels, fractions=None, attrs: dict | None = None) -> None:
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("patch_labels", data=np.asarray(labels).astype(np.int64))
        for k, v in (attrs or {}).items():
            ds.attrs[k] = v
        if fractions is not None:
            f.create_dataset("tumor_fraction", data=np.asarray(fractions, dtype=np.float32))


def _level0_size(attrs: dict) -> tuple[int, int] | None:
    if "level0_width" in attrs and "level0_height" in attrs:
        return int(attrs["level0_width"]), int(attrs["level0_height"])
    return None


def _check_mask_size(slide, level0_size, mask) -> None:
    """The mask's level 0 must be the slide's (``level0_width/height`` of the coords file)."""
    if level0_size is not None and tuple(slide.dimensions) != tuple(level0_size):
        name = mask if isinstance(mask, (str, os.PathLike)) else "(open slide)"
        raise LabelInputError(
            f"mask {name} is {slide.dimensions[0]}x{slide.dimensions[1]} at level 0 but the "
            f"slide is {level0_size[0]}x{level0_size[1]} (level0_width/height of the coords "
            "file, else the slide in --wsi_dir): is it the mask of another slide?"
        )


def mask_values(mask, patch_size_level0: int, min_patch_px: int = MIN_PATCH_PX) -> np.ndarray:
    """Pixel count of every value 0..255 of a mask, on the level the labels are read from
    (read in bands of rows): int64 ``(256,)``."""
    slide, opened = _open_slide(mask, "mask")
    try:
        level = _choose_level(slide.level_downsamples, patch_size_level0, min_patch_px)
        ds = float(slide.level_downsamples[level])
        width, height = slide.level_dimensions[level]
        rows = max(1, BAND_PIXELS // max(width, 1))
        counts = np.zeros(256, dtype=np.int64)
        for r0 in range(0, height, rows):
            n = min(rows, height - r0)
            band = np.asarray(slide.read_region((0, int(round(r0 * ds))), level, (width, n)))
            counts += np.bincount(band[:, :, 0].ravel(), minlength=256)
        return counts
    finally:
        if opened:
            slide.close()


def _check_tumor_value(mask, patch_size_level0: int, tumor_value: int) -> None:
    """A tumor slide whose patches hold no ``tumor_value`` pixel: if the mask has no such pixel
    at all but other non-zero values, the value is wrong (a binary mask, tumor = 1?)."""
    counts = mask_values(mask, patch_size_level0)
    if 0 <= tumor_value < 256 and counts[tumor_value]:
        return  # tumor exists, just not under a patch (summary_line lists such slides)
    others = [int(v) for v in np.flatnonzero(counts) if v != 0]
    name = mask if isinstance(mask, (str, os.PathLike)) else "(open slide)"
    if others:
        shown = ", ".join(f"{v} ({counts[v]} px)" for v in others)
        raise LabelInputError(
            f"tumor slide mask {name} holds no pixel of value {tumor_value} (--tumor_value / "
            f"tumor_value) but holds the non-zero value(s) {shown}: pass --tumor_value "
            f"{others[-1]} if {others[-1]} marks tumor (a binary mask uses 1)."
        )
    warnings.warn(f"tumor slide mask {name} is all 0: no tumor pixel.", stacklevel=3)


def _check_xml_has_tumor(xml_path, tumor_groups: Sequence[str] = TUMOR_GROUPS) -> None:
    """An annotation file of a tumor slide must hold a tumor polygon: name the groups it has."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tumor, _ = read_polygons(xml_path, tumor_groups)
    if tumor:
        return
    groups = sorted(
        {a.get("PartOfGroup", "") for a in ET.parse(xml_path).getroot().iter("Annotation")}
    )
    raise LabelInputError(
        f"annotation file {xml_path} has no tumor polygon (groups found: "
        f"{groups or 'no annotation at all'}; tumor groups are {list(tumor_groups)}): the "
        "slide would get no tumor patch."
    )


def _check_tumor_source(mask_path, xml_path, level0_size) -> None:
    """Open the mask (and compare its size with the slide's) or parse the XML, reading no pixels."""
    if mask_path is not None:
        slide, _ = _open_slide(mask_path, "mask")
        try:
            _check_mask_size(slide, level0_size, mask_path)
        finally:
            slide.close()
    if xml_path is not None:
        try:
            ET.parse(xml_path)
        except (ET.ParseError, OSError) as exc:
            raise LabelInputError(f"cannot read annotation file {xml_path}: {exc}") from exc
        _check_xml_has_tumor(xml_path)


def _mask_extent_problem(mask_path, coords: np.ndarray, patch_size_level0: int) -> str | None:
    """Without the slide's size: patches lying wholly beyond the mask betray a wrong mask."""
    if mask_path is None or not len(coords):
        return None
    slide, _ = _open_slide(mask_path, "mask")
    try:
        width, height = slide.dimensions
    finally:
        slide.close()
    outside = (coords[:, 0] >= width) | (coords[:, 1] >= height)
    if outside.any():
        x, y = coords[np.flatnonzero(outside)[0]]
        return (
            f"mask {mask_path} is {width}x{height} at level 0 but {int(outside.sum())} patches "
            f"lie beyond it (e.g. at {x},{y}): is it the mask of another slide?"
        )
    return None


def _slide_size(wsi_dir: Path, name: str) -> tuple[int, int]:
    """Level-0 ``(width, height)`` of ``<wsi_dir>/<name>.<ext>``."""
    from helpers.settings import WSI_EXTENSIONS

    for ext in WSI_EXTENSIONS:
        path = wsi_dir / f"{name}{ext}"
        if path.is_file():
            slide, _ = _open_slide(path, "slide")
            try:
                return tuple(slide.dimensions)
            finally:
                slide.close()
    raise FileNotFoundError(f"no slide {name}.* in {wsi_dir} (looked for {WSI_EXTENSIONS})")


def read_labels_csv(csv_path) -> pd.DataFrame:
    """A slide-labels CSV (``wsi_name,wsi_label``), checked row by row.

    Raises :class:`LabelInputError` (naming the file, and the lines at fault) for an empty
    file, a file with a header but no rows, missing columns, blank names, names listed
    twice, and labels that are blank or not 0/1; ``FileNotFoundError`` when it is missing.

    Returns:
        The table with ``wsi_name`` as ``str`` and ``wsi_label`` as ``int`` (0 or 1).
    """
    csv_path = Path(csv_path)
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
    names = df["wsi_name"].str.strip()
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


_read_labels_csv = read_labels_csv  # the name used before


def label_folder(
    csv_path,
    coords_dir,
    save_dir,
    masks_dir=None,
    annotations_dir=None,
    patch_size: int = 1024,
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
        patch_size, patch_level: Patch side at ``patch_level``; the level-0 side is
            ``patch_size * 2**patch_level`` (1024 and 0 for CAMELYON16 at 20x / 512 px).
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
    if isinstance(patch_size, bool) or int(patch_size) != patch_size or patch_size <= 0:
        raise LabelInputError(f"--patch_size must be a whole number > 0, got {patch_size}.")
    if isinstance(patch_level, bool) or int(patch_level) != patch_level or patch_level < 0:
        raise LabelInputError(f"--patch_level must be a whole number >= 0, got {patch_level}.")
    patch_size_level0 = int(patch_size) * 2 ** int(patch_level)
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}.")
    save_dir = Path(save_dir)
    _check_save_dir(save_dir)
    df = read_labels_csv(csv_path)
    coords_dir = Path(coords_dir)
    if not coords_dir.is_dir():
        raise FileNotFoundError(f"coords folder not found: {coords_dir}")
    masks_dir = Path(masks_dir) if masks_dir is not None else None
    annotations_dir = Path(annotations_dir) if annotations_dir is not None else None
    wsi_dir = Path(wsi_dir) if wsi_dir is not None else None
    for folder, what in ((masks_dir, "masks"), (annotations_dir, "annotations"), (wsi_dir, "wsi")):
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"{what} folder not found: {folder}")

    # 1. check every input before writing anything, and report every problem at once
    loaded = []
    problems = []
    unchecked = []
    for name, label in zip(df["wsi_name"], df["wsi_label"], strict=True):
        coords_path = coords_dir / f"{name}_patches.h5"
        if not coords_path.is_file():
            problems.append(f"{name}: no coords file {coords_path}")
            continue
        mask_path = xml_path = None
        if label == 1:
            if masks_dir is not None and (masks_dir / f"{name}_mask.tif").is_file():
                mask_path = masks_dir / f"{name}_mask.tif"
            elif annotations_dir is not None and (annotations_dir / f"{name}.xml").is_file():
                xml_path = annotations_dir / f"{name}.xml"
            else:
                looked = [str(d) for d in (masks_dir, annotations_dir) if d is not None]
                problems.append(
                    f"{name}: tumor slide with neither {name}_mask.tif nor {name}.xml "
                    f"(looked in {looked or 'no folder: pass masks_dir or annotations_dir'})"
                )
        try:
            coords, attrs = read_coords(coords_path, patch_size_level0)
            level0_size = _level0_size(attrs)
            if level0_size is None and wsi_dir is not None:
                level0_size = _slide_size(wsi_dir, name)
            _check_tumor_source(mask_path, xml_path, level0_size)
            if level0_size is None and mask_path is not None:
                unchecked.append(name)
                extent = _mask_extent_problem(mask_path, coords, patch_size_level0)
                if extent:
                    raise LabelInputError(extent)
        except (LabelInputError, FileNotFoundError) as exc:
            problems.append(f"{name}: {exc}")
            continue
        loaded.append((name, label, coords, level0_size, mask_path, xml_path))
    _raise_problems(problems, len(df))
    if unchecked:
        warnings.warn(
            f"the coords of {len(unchecked)} tumor slide(s) ({', '.join(unchecked[:MAX_SHOWN])}"
            f"{', ...' if len(unchecked) > MAX_SHOWN else ''}) have no level0_width/height: "
            "their masks were not checked against the slides' size; pass --wsi_dir (wsi_dir=) "
            "to check them.",
            stacklevel=2,
        )

    # 2. label every slide (in memory)
    rows, outputs = [], []
    for name, label, coords, level0_size, mask_path, xml_path in tqdm(
        loaded, desc="patch labels", unit="slide", disable=not progress
    ):
        t = float(threshold)
        relaxed = False
        if label == 0:
            fr = np.zeros(len(coords), dtype=np.float64)
            labels = np.zeros(len(coords), dtype=np.int64)
            source = "none"
        else:
            try:
                labels, fr, source = label_slide(
                    coords,
                    patch_size_level0,
                    mask=mask_path,
                    xml_path=xml_path,
                    threshold=t,
                    tumor_value=tumor_value,
                    level0_size=level0_size,
                )
            except LabelInputError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if relax_threshold and len(coords) and labels.sum() == 0:
                t = relaxed_threshold(fr, t)
                labels = labels_from_fractions(fr, t)
                relaxed = True
                tqdm.write(
                    f"warning: {name}: no patch above threshold {threshold}; relaxed to {t:g} "
                    f"({int(labels.sum())} positive patches).",
                    file=sys.stderr,
                )
        attrs = {"threshold": t, "source": source, "patch_size_level0": patch_size_level0}
        outputs.append((save_dir / f"{name}.h5", labels, fr, attrs))
        rows.append(
            {
                "name": name,
                "wsi_label": int(label),
                "n_patches": len(coords),
                "n_positive": int(labels.sum()),
                "source": source,
                "threshold": t,
                "relaxed": relaxed,
            }
        )
    _raise_problems(problems, len(df))

    # 3. write: every file to a temporary name first, then rename them all
    _write_all(save_dir, outputs)
    return pd.DataFrame(
        rows,
        columns=[
            "name",
            "wsi_label",
            "n_patches",
            "n_positive",
            "source",
            "threshold",
            "relaxed",
        ],
    )


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


def _write_all(save_dir: Path, outputs: list) -> None:
    """Write every ``(path, labels, fractions, attrs)`` or none (tmp files, then renames)."""
    written: list[tuple[Path, Path]] = []
    try:
        save_dir.mkdir(parents=True, exist_ok=True)
        for path, labels, fr, attrs in outputs:
            tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
            written.append((tmp, path))
            _write_labels_h5(tmp, labels, fr, attrs)
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
    p.add_argument("--patch_size", type=int, default=1024, help="patch side at --patch_level")
    p.add_argument("--patch_level", type=int, default=0, help="level of --patch_size")
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
