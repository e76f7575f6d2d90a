"""Satellite foci (demo cohort version 5): small extra lesions beside a macro-metastasis, some
of them sparse, so that the lesion-level FROC has lesions that are hard to find."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from helpers import demo, froc, synth
from helpers.labels import read_polygons

P0 = demo.PATCH_SIZE_LEVEL0


def _depth(shape: tuple[int, int]) -> np.ndarray:
    """Distance to the edge of a rectangle of tissue that fills ``shape`` (painting px)."""
    import cv2

    tissue = np.zeros(shape, np.uint8)
    tissue[20:-20, 20:-20] = 1
    return cv2.distanceTransform(tissue, cv2.DIST_L2, 5)


@pytest.mark.slow
def test_satellites_cover_one_or_two_patches_and_keep_apart():
    rng = np.random.default_rng(3)
    for _ in range(5):
        depth = _depth((1600, 1600))  # 6.4 mm square: room for every focus
        polygons = demo._place_satellites(rng, depth)
        assert demo.SATELLITES[0] <= len(polygons) <= demo.SATELLITES[1]
        for poly in polygons:
            n_cells = int((demo._cell_fractions(poly) > 0.55).sum())
            assert 1 <= n_cells <= demo.MAX_SATELLITE_PATCHES
        centres = np.array([p.mean(0) for p in polygons])
        gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        assert (gaps[np.triu_indices(len(centres), 1)] > 2 * P0).all()


def test_satellites_fewer_when_there_is_no_room():
    depth = _depth((200, 200))
    depth[:] = 0  # no tissue left: the main lesion took it all
    assert demo._place_satellites(np.random.default_rng(0), depth) == []


def test_low_cellularity_paints_fewer_tumour_cells():
    """Same slide, same draws: a focus at 30% cellularity is closer to lymph node than a
    solid one (the painting at cellularity 0 inside the same outline)."""
    shape = (240, 240)
    tissue = np.ones(shape, bool)
    tumor = np.zeros(shape, bool)
    tumor[80:160, 80:160] = True
    stain = {"h": 1.0, "e": 1.0, "hue": 0.0, "blur": 0.6, "tint": (0.0, 0.0, 0.0),
             "stroma": 0.2, "follicles": 0.0, "histiocytes": 0.0}  # fmt: skip

    def paint(share: float) -> np.ndarray:
        cellularity = np.full(shape, share, np.float32)
        rng = np.random.default_rng(7)
        return synth.paint_section(rng, tissue, tumor, stain, cellularity).astype(np.float32)

    node, sparse, solid = paint(0.0), paint(0.3), paint(1.0)
    inside = np.s_[90:150, 90:150]

    def distance(a: np.ndarray) -> float:
        return float(np.abs(a[inside] - node[inside]).mean())

    assert 0 < distance(sparse) < 0.6 * distance(solid)
    default = synth.paint_section(np.random.default_rng(7), tissue, tumor, stain)
    assert np.abs(default - solid).max() <= 1, "no cellularity map = a solid lesion"


def test_macro_slides_hold_several_lesions(demo_dir):
    """Macro slides' XML files hold more regions than the one or two main lesions (several
    slides with three or more); the test split holds more lesions on the patch grid than
    tumour slides."""
    paths = demo.CohortPaths(demo_dir)
    specs = demo.plan_cohort(0)
    macro = [s for s in specs if s.kind == "macro"]
    n_polygons = [len(read_polygons(paths.xml(s.name))[0]) for s in macro]
    assert sum(n >= 3 for n in n_polygons) >= 4, dict(
        zip([s.name for s in macro], n_polygons, strict=True)
    )
    n_lesions = 0
    for spec in (s for s in specs if s.split == "test" and s.label):
        with h5py.File(paths.coords_path(spec.name), "r") as f:
            grid = f["coords"][:] // P0
        with h5py.File(paths.patch_labels_path(spec.name), "r") as f:
            y = f["patch_labels"][:]
        n_lesions += int(froc.lesions(y, grid).max()) if y.any() else 0
    n_tumour = int(pd.read_csv(demo_dir / "test.csv").wsi_label.sum())
    assert n_lesions > 1.5 * n_tumour, (n_lesions, n_tumour)
