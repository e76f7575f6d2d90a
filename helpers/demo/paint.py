"""Painting one demo slide: lesions placed in a tissue section, painted by
:mod:`helpers.synth`, written as a pyramidal TIFF, a mask pyramid and (tumour) ASAP XML."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile

from helpers import synth
from helpers.annotations import fill_polygons, outline, rasterise, write_asap_xml
from helpers.demo.plan import (
    LEVEL0_MAG,
    MPP,
    N_LEVELS,
    PATCH_SIZE_LEVEL0,
    CohortPaths,
    SlideSpec,
)
from helpers.fileio import atomic_path

#: Lesion radius ranges in micrometres, by kind: a macro-metastasis is larger than 2 mm across
#: at most; a micro-metastasis covers one to four patches; isolated tumour cells (ITC) are
#: clusters smaller than half a patch (slide positive, no positive patch).
LESION_RADIUS_UM = {"macro": (1100.0, 1900.0), "micro": (130.0, 300.0), "itc": (30.0, 60.0)}
MAX_MICRO_PATCHES = 4
#: Satellite foci around a macro-metastasis: how many are drawn, their radius in
#: micrometres, and the most patches each may cover (as CAMELYON16's macro slides, which
#: often hold small foci beside the main lesion, each a lesion of its own in the FROC). They
#: keep well away from the main lesion, so a small section has room for fewer or none: in
#: the seed-0 cohort (version 7) 7 of the 15 macro slides got 2-3 (XML regions per slide,
#: main included: 1-4).
SATELLITES = (2, 5)
SATELLITE_RADIUS_UM = (90.0, 170.0)
MAX_SATELLITE_PATCHES = 2
#: Cellularity of a satellite focus (share of a solid nest's tumour cells, the rest of it
#: lymph node): some infiltrate the node as scattered cells, as lobular carcinoma does,
#: and are much harder to see than the main lesion.
SATELLITE_CELLULARITY = (0.25, 1.0)


def _place_lesions(
    rng: np.random.Generator, spec: SlideSpec, tissue: np.ndarray
) -> tuple[list[np.ndarray], list[float]]:
    """Tumour polygons (level-0 x, y) inside the tissue and the cellularity of each (1 for a
    solid lesion): one or two macro lesions with up to five satellite foci where the section
    has room, one micro lesion of 1-4 patches, or one to three ITC clusters."""
    if spec.kind == "normal":
        return [], []
    paint_downsample = synth.PAINT_DOWNSAMPLE
    um_to_level0 = 1.0 / MPP
    depth = synth.distance_to_edge(tissue)
    polygons: list[np.ndarray] = []
    n_lesions = {"macro": rng.choice([1, 2], p=[0.6, 0.4]), "micro": 1}.get(
        spec.kind, int(rng.integers(1, 4))
    )
    for _ in range(n_lesions):
        for _attempt in range(400):
            radius = rng.uniform(*LESION_RADIUS_UM[spec.kind]) * um_to_level0
            # macro lesions may reach the tissue border (the tumour is clipped to tissue)
            ok = np.argwhere(
                depth > (0.8 if spec.kind == "macro" else 1.25) * radius / paint_downsample
            )
            if len(ok) == 0:
                continue
            cy, cx = ok[rng.integers(len(ok))] * paint_downsample
            poly = synth.lesion_polygon(rng, (float(cx), float(cy)), radius)
            if spec.kind != "macro":
                fractions = _cell_fractions(poly)
                if spec.kind == "micro":
                    n_cells = int((fractions > 0.55).sum())
                    fits = 1 <= n_cells <= MAX_MICRO_PATCHES and fractions.max() <= 0.98
                else:  # isolated tumour cells: no patch anywhere near half tumour
                    fits = fractions.max() < 0.4
                if not fits:
                    continue
            polygons.append(poly)
            # the next lesion goes elsewhere
            cv2.circle(
                depth,
                (int(cx / paint_downsample), int(cy / paint_downsample)),
                int(2.2 * radius / paint_downsample),
                0.0,
                -1,
            )
            break
    if not polygons:  # pragma: no cover - the sizes above always fit
        raise RuntimeError(f"{spec.name}: could not place a {spec.kind} lesion")
    cellularity = [1.0] * len(polygons)
    if spec.kind == "macro":
        satellites = _place_satellites(rng, depth)
        polygons += satellites
        cellularity += [float(rng.uniform(*SATELLITE_CELLULARITY)) for _ in satellites]
    return polygons, cellularity


def _place_satellites(rng: np.random.Generator, depth: np.ndarray) -> list[np.ndarray]:
    """Small foci (level-0 polygons) away from the lesions already placed (``depth``: the
    distance to the tissue edge, zero around those lesions); each covers 1 to
    ``MAX_SATELLITE_PATCHES`` patches at least half, and the foci keep two patches apart.
    A section too small for all of them gets fewer, or none."""
    paint_downsample = synth.PAINT_DOWNSAMPLE
    gap = 2 * PATCH_SIZE_LEVEL0 / paint_downsample
    polygons = []
    for _ in range(int(rng.integers(SATELLITES[0], SATELLITES[1] + 1))):
        for _attempt in range(200):
            radius = rng.uniform(*SATELLITE_RADIUS_UM) / MPP
            ok = np.argwhere(depth > 1.25 * radius / paint_downsample)
            if len(ok) == 0:
                break
            cy, cx = ok[rng.integers(len(ok))] * paint_downsample
            poly = synth.lesion_polygon(rng, (float(cx), float(cy)), radius)
            n_cells = int((_cell_fractions(poly) > 0.55).sum())
            if not 1 <= n_cells <= MAX_SATELLITE_PATCHES:
                continue
            polygons.append(poly)
            centre = (int(cx / paint_downsample), int(cy / paint_downsample))
            cv2.circle(depth, centre, int(radius / paint_downsample + gap), 0.0, -1)
            break
    return polygons


def _cell_fractions(poly: np.ndarray) -> np.ndarray:
    """Share of each grid cell under ``poly`` (coarse raster, 8 level-0 px), cells of the
    polygon's bounding box: float ``(rows, cols)``."""
    scale = 8
    x0, y0 = (poly.min(0) // PATCH_SIZE_LEVEL0) * PATCH_SIZE_LEVEL0
    x1, y1 = (poly.max(0) // PATCH_SIZE_LEVEL0 + 1) * PATCH_SIZE_LEVEL0
    img = np.zeros((int((y1 - y0) / scale), int((x1 - x0) / scale)), np.uint8)
    fill_polygons(img, [poly], 1, scale, (x0, y0), pixel_centres=False)
    c = PATCH_SIZE_LEVEL0 // scale
    return img.reshape(img.shape[0] // c, c, img.shape[1] // c, c).mean((1, 3))


def pyramid_levels(image: np.ndarray, n_levels: int, interpolation: int) -> list[np.ndarray]:
    """``image`` and its successive halvings: ``n_levels`` arrays, downsamples 1, 2, 4, ..."""
    levels = [image]
    while len(levels) < n_levels:
        prev = levels[-1]
        size = (prev.shape[1] // 2, prev.shape[0] // 2)
        levels.append(cv2.resize(prev, size, interpolation=interpolation))
    return levels


def write_pyramid(path: Path, levels: list[np.ndarray], description: str | None, **kw) -> None:
    """One 256-px-tiled page per pyramid level, written atomically.

    openslide sees the pages as levels only as separate pages marked as reduced images
    (``subfiletype=1``); it ignores SubIFDs. ``kw`` goes to ``tifffile.TiffWriter.write``
    (``photometric``, ``compression``, ...).
    """
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=False) as tif:
        for i, img in enumerate(levels):
            tif.write(
                img,
                tile=(256, 256),
                description=description if i == 0 else None,
                subfiletype=0 if i == 0 else 1,
                metadata=None,
                **kw,
            )


def aperio_description(width: int, height: int) -> str:
    """The ImageDescription that makes openslide read a TIFF as Aperio: 20x, 0.5 um/px."""
    return (
        f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"(256x256) JPEG/RGB Q=80|AppMag = {LEVEL0_MAG}|MPP = {MPP}"
    )


#: Section sizes in grid cells (width range, height range) by kind of slide
SECTION_CELLS = {
    "large": ((44, 49), (34, 39)),
    "micro": ((26, 31), (20, 25)),
    "other": ((17, 23), (12, 17)),
}


def _stain(rng: np.random.Generator, spec: SlideSpec) -> dict:
    """The slide's staining and scanning (its centre's ranges) and its tissue make-up; some
    normal nodes are reactive: many germinal centres and histiocyte clusters."""
    centre = synth.CENTRES[spec.centre]
    stain = {key: rng.uniform(*bounds) for key, bounds in centre.items() if key != "tint"}
    stain["tint"] = centre["tint"]  # fixed per centre
    reactive = rng.random() < 0.3
    stain["stroma"] = rng.uniform(0.12, 0.45)
    stain["follicles"] = rng.uniform(4.0, 9.0) if reactive else rng.uniform(1.0, 5.0)
    stain["histiocytes"] = rng.uniform(0.4, 1.0) if reactive else rng.uniform(0.0, 0.3)
    return stain


def make_slide(spec: SlideSpec, paths: CohortPaths, seed: int) -> None:
    """Paint one slide and write its TIFF pyramid, mask pyramid and (tumour) XML."""
    rng = np.random.default_rng([seed, 1, spec.index])
    paint_downsample = synth.PAINT_DOWNSAMPLE
    size_class = "large" if spec.large else ("micro" if spec.kind == "micro" else "other")
    (w_lo, w_hi), (h_lo, h_hi) = SECTION_CELLS[size_class]
    width = int(rng.integers(w_lo, w_hi)) * PATCH_SIZE_LEVEL0 + 32 * int(rng.integers(0, 12))
    height = int(rng.integers(h_lo, h_hi)) * PATCH_SIZE_LEVEL0 + 32 * int(rng.integers(0, 12))
    shape = (height // paint_downsample, width // paint_downsample)
    # a margin of one grid cell: no patch reaches beyond the slide
    tissue = synth.tissue_shape(rng, shape, margin=PATCH_SIZE_LEVEL0 // paint_downsample + 4)
    # the annotation follows the tissue edge: outline (lesion AND tissue); the texture, the
    # XML and the mask all come from that one outline
    placed, cellularity = _place_lesions(rng, spec, tissue)
    lesions = rasterise(shape, placed, paint_downsample, pixel_centres=False).astype(bool) & tissue
    polygons = outline(lesions, paint_downsample)
    tumor = rasterise(shape, polygons, paint_downsample, pixel_centres=False).astype(bool)
    percent = np.full(shape, 100, np.uint8)  # tumour cells in percent: solid but in sparse foci
    for poly, share in zip(placed, cellularity, strict=True):
        if share < 1.0:
            fill_polygons(
                percent, [poly], round(100 * share), paint_downsample, pixel_centres=False
            )
    painted = synth.paint_section(
        rng, tissue, tumor, _stain(rng, spec), cellularity=percent / 100.0
    )

    # slide pyramid: level 2 (downsample 4) is the painting itself
    top = [
        cv2.resize(painted, (width, height), interpolation=cv2.INTER_LINEAR),
        cv2.resize(painted, (width // 2, height // 2), interpolation=cv2.INTER_LINEAR),
    ]
    write_pyramid(
        paths.wsi(spec.name),
        top + pyramid_levels(painted, N_LEVELS - 2, cv2.INTER_AREA),
        aperio_description(width, height),
        photometric="rgb",
        compression="jpeg",
        compressionargs={"level": 80},
    )
    del top

    # mask pyramid: tissue from the painting, tumour rasterised from the outline at level 0
    mask0 = cv2.resize(tissue.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
    mask0[rasterise((height, width), polygons, 1.0, pixel_centres=False).astype(bool)] = 2
    write_pyramid(
        paths.mask(spec.name),
        pyramid_levels(mask0, N_LEVELS, cv2.INTER_NEAREST),
        None,
        photometric="minisblack",
        compression="zlib",
        compressionargs={"level": 1},
    )
    if polygons:
        write_asap_xml(paths.xml(spec.name), polygons)
