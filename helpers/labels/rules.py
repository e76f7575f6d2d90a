"""The labelling rules: a patch is tumour when more than ``threshold`` of it is, its
fraction from the mask or the XML; and the checks of one slide's tumour source."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from helpers.annotations import (
    TUMOR_GROUPS,
    annotation_groups,
    read_polygons,
)
from helpers.coverage import (
    check_mask_size,
    mask_values,
    tumor_fraction_from_mask,
    tumor_fraction_from_xml,
)
from helpers.formats import (
    LabelInputError,
)
from helpers.layout import WSI_EXTENSIONS
from helpers.slide import open_slide

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


def check_tumor_source(mask_path, xml_path, level0_size) -> None:
    """Open the mask (and compare its size with the slide's) or parse the XML, reading no pixels."""
    if mask_path is not None:
        slide, _ = open_slide(mask_path, "mask")
        try:
            check_mask_size(slide, level0_size, mask_path)
        finally:
            slide.close()
    if xml_path is not None:
        _check_xml_has_tumor(xml_path, level0_size=level0_size)


def mask_extent_problem(mask_path, coords_level0: np.ndarray, patch_size_level0: int) -> str | None:
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


def wsi_size(wsi_dir: Path, name: str) -> tuple[int, int]:
    """Level-0 ``(width, height)`` of ``<wsi_dir>/<name>.<ext>``."""
    for ext in WSI_EXTENSIONS:
        path = wsi_dir / f"{name}{ext}"
        if path.is_file():
            slide, _ = open_slide(path, "slide")
            try:
                width, height = slide.dimensions
                return int(width), int(height)
            finally:
                slide.close()
    raise FileNotFoundError(f"no slide {name}.* in {wsi_dir} (looked for {WSI_EXTENSIONS})")
