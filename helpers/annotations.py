"""ASAP annotation XML: read tumour polygons, write them, and rasterise polygons.

CAMELYON16's annotations are ASAP XML files: ``<Annotation PartOfGroup="_0">`` elements holding
``<Coordinate Order= X= Y=>`` vertices in level-0 pixels. Groups ``_0`` and ``_1`` are tumour,
``_2`` are exclusion holes cut out of the tumour.

Public API (polygons are ``(K, 2)`` float64 level-0 ``(x, y)`` vertices)::

    read_polygons(xml_path) -> (tumor polygons, exclusion polygons)
    asap_xml([(polygon, group), ...], {group: colour}) -> str
    write_asap_xml(path, polygons, group="Tumor")
    fill_polygons(img, polygons, value, scale, origin=(0, 0), pixel_centres=True)
    rasterise(shape, polygons, scale, pixel_centres=True) -> uint8 (height, width)
    outline(region, scale) -> polygons of the outer contours of a bool map
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

import cv2
import numpy as np

from helpers.fileio import atomic_path
from helpers.formats import LabelInputError

__all__ = [
    "TUMOR_GROUPS",
    "EXCLUDE_GROUPS",
    "read_polygons",
    "annotation_groups",
    "asap_xml",
    "write_asap_xml",
    "fill_polygons",
    "rasterise",
    "outline",
]

#: ``PartOfGroup`` values of ASAP annotations that mark tumor (CAMELYON16 uses ``_0``/``_1``).
TUMOR_GROUPS = ("_0", "_1", "Tumor", "tumor", "metastases", "Metastases")
#: ``PartOfGroup`` values that mark exclusion holes inside tumor (CAMELYON16 uses ``_2``).
EXCLUDE_GROUPS = ("_2", "Exclusion", "exclusion")
#: Sub-pixel bits used when rasterising polygons with ``cv2.fillPoly``.
SHIFT = 4


def _parse(xml_path) -> ET.Element:
    path = Path(xml_path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise LabelInputError(f"cannot read annotation file {path}: {exc}") from exc


def annotation_groups(xml_path) -> list[str]:
    """The sorted ``PartOfGroup`` values of every annotation of an ASAP XML file."""
    return sorted({a.get("PartOfGroup", "") for a in _parse(xml_path).iter("Annotation")})


def _vertices(ann: ET.Element, path: Path) -> np.ndarray:
    """``(K, 2)`` float64 vertices of one annotation, in ``Order``."""
    pts = []
    for c in ann.iter("Coordinate"):
        try:  # a missing X or Y reads "", which float() refuses as it does any bad number
            pts.append(
                (float(c.get("Order", len(pts))), float(c.get("X", "")), float(c.get("Y", "")))
            )
        except (TypeError, ValueError) as exc:
            raise LabelInputError(f"bad Coordinate in {path}: {c.attrib}") from exc
    pts.sort(key=lambda p: p[0])
    return np.array([p[1:] for p in pts], dtype=np.float64).reshape(-1, 2)


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
    root = _parse(path)
    tumor: list[np.ndarray] = []
    exclude: list[np.ndarray] = []
    unknown: set[str] = set()
    for ann in root.iter("Annotation"):
        group = ann.get("PartOfGroup", "")
        poly = _vertices(ann, path)
        if len(poly) < 3:
            continue  # a dot or a line has no area
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


def asap_xml(
    annotations: Sequence[tuple[np.ndarray, str]], groups: dict[str, str], decimals: int = 2
) -> str:
    """The text of an ASAP annotation file.

    Arguments:
        annotations: ``(polygon, group)`` pairs, each polygon ``(K, 2)`` level-0 ``(x, y)``;
            one ``Polygon`` annotation each, in this order.
        groups: ``{group name: colour}`` for the ``AnnotationGroups`` section.
        decimals: Decimals written per coordinate.
    """
    lines = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "\t<Annotations>"]
    for i, (poly, group) in enumerate(annotations):
        lines.append(
            f'\t\t<Annotation Name="Annotation {i}" Type="Polygon" '
            f'PartOfGroup={quoteattr(group)} Color="#F4FA58">'
        )
        lines.append("\t\t\t<Coordinates>")
        for j, (x, y) in enumerate(poly):
            lines.append(
                f'\t\t\t\t<Coordinate Order="{j}" X="{x:.{decimals}f}" Y="{y:.{decimals}f}" />'
            )
        lines += ["\t\t\t</Coordinates>", "\t\t</Annotation>"]
    lines += ["\t</Annotations>", "\t<AnnotationGroups>"]
    for group, colour in groups.items():
        lines += [
            f'\t\t<Group Name={quoteattr(group)} PartOfGroup="None" Color="{colour}">',
            "\t\t\t<Attributes />",
            "\t\t</Group>",
        ]
    lines += ["\t</AnnotationGroups>", "</ASAP_Annotations>"]
    return "\n".join(lines) + "\n"


def write_asap_xml(path: Path, polygons: list[np.ndarray], group: str = "Tumor") -> None:
    """ASAP annotation XML, one ``Polygon`` per lesion in ``group``, level-0 coordinates;
    atomically."""
    text = asap_xml([(p, group) for p in polygons], {group: "#ff0000"})
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def fill_polygons(
    img: np.ndarray,
    polygons: list[np.ndarray],
    value: int,
    scale: float,
    origin: tuple[float, float] = (0, 0),
    pixel_centres: bool = True,
) -> None:
    """Fill level-0 ``polygons`` into ``img`` (in place), a map of ``scale`` level-0 px per pixel
    whose pixel ``(0, 0)`` starts at level-0 ``origin``.

    With ``pixel_centres`` (the labels' choice), pixel ``i`` covers level-0 pixels
    ``origin + i*scale ... origin + (i+1)*scale - 1``, whose centres (cv2 puts pixel centres at
    integer positions) average to ``origin + i*scale + (scale - 1) / 2``; at ``scale`` 1 this
    is ``cv2.fillPoly`` at level 0. Without it (the demo's painting), vertices are simply
    divided by ``scale``. Vertices keep ``SHIFT`` sub-pixel bits. Each polygon is filled by
    its own call: ``fillPoly`` treats the overlap of a list's polygons as a hole.
    """
    ox, oy = origin
    c = (scale - 1.0) / 2.0 if pixel_centres else 0.0
    for p in polygons:
        xy = np.stack([(p[:, 0] - ox - c) / scale, (p[:, 1] - oy - c) / scale], axis=1)
        pts = np.rint(xy * (1 << SHIFT)).astype(np.int32)
        cv2.fillPoly(img, [pts], int(value), lineType=cv2.LINE_8, shift=SHIFT)


def rasterise(
    shape: tuple[int, int], polygons: list[np.ndarray], scale: float, pixel_centres: bool = True
) -> np.ndarray:
    """Level-0 ``polygons`` filled with 1 in a new uint8 image of ``shape`` ``(height, width)``
    at ``1/scale`` of level 0 (see :func:`fill_polygons`)."""
    img = np.zeros(shape, np.uint8)
    fill_polygons(img, polygons, 1, scale, pixel_centres=pixel_centres)
    return img


def outline(region: np.ndarray, scale: float) -> list[np.ndarray]:
    """Outer contours of a bool ``region`` (``scale`` level-0 px per pixel) as level-0 polygons
    (pixel centres times ``scale``); contours of fewer than 3 points are left out."""
    contours, _ = cv2.findContours(
        region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    return [(c[:, 0, :].astype(np.float64) + 0.5) * scale for c in contours if len(c) >= 3]
