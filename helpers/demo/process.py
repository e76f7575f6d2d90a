"""TRIDENT's steps on one painted demo slide (thumbnail, tissue, patch grid, features), and
one slide built whole: painted, then processed."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np

from helpers.demo.manifest import FileRecord, file_record
from helpers.demo.paint import make_slide
from helpers.demo.plan import PATCH_SIZE, TARGET_MAG, CohortPaths, SlideSpec
from helpers.layout import DEMO_ENCODER


@contextmanager
def _one_torch_thread():
    """Run the block on one torch thread, so that the worker processes (one slide each) do
    not oversubscribe the cores. (In float32, threads summed a convolution in another order
    and moved float16 features; the float64 features differ by about 1e-16 with the thread
    count, and tests/test_determinism.py checks two threads give the same bytes.)"""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def process_slide(spec: SlideSpec, paths: CohortPaths) -> None:
    """Thumbnail, tissue segmentation, patch grid and features, from the slide's pixels.

    The features are computed in float64 and rounded once to the float16 that is stored
    (numpy's conversion rounds directly, not through float32): float32 arithmetic rounds
    differently on each CPU's kernels, so the stored bytes would depend on the machine.
    """
    import openslide
    import torch

    from helpers import trident
    from helpers.encoder import StainStatsEncoder
    from helpers.formats import save_coords, save_features, save_thumbnail

    with openslide.OpenSlide(str(paths.wsi(spec.name))) as slide, _one_torch_thread():
        save_thumbnail(slide, paths.thumbnail_path(spec.name))
        tissue, downsample = trident.segment_tissue(slide)
        attrs = trident.coords_attributes(
            slide, spec.name, paths.coords_path(spec.name).parent, PATCH_SIZE, TARGET_MAG
        )
        coords_level0 = trident.patch_grid(
            tissue, downsample, slide.dimensions, attrs["patch_size_level0"]
        )
        save_coords(paths.coords_path(spec.name), coords_level0, attrs)
        feats = trident.extract_features(
            slide,
            coords_level0,
            attrs,
            StainStatsEncoder(dtype=torch.float64),
            path=paths.wsi(spec.name),
        )
        save_features(  # float16, as TRIDENT v0.3.0 writes them
            paths.features_path(spec.name),
            feats.astype(np.float16),
            coords_level0,
            attrs,
            DEMO_ENCODER,
        )


def build_one(spec: SlideSpec, root: str, seed: int) -> dict[str, FileRecord]:
    """Paint and process one slide; return the records of the files written (see
    :func:`file_record`), keyed by their path relative to ``root``."""
    paths = CohortPaths(Path(root))
    for p in paths.processed_files(spec):  # outputs of an older slide must not survive it
        p.unlink(missing_ok=True)
    make_slide(spec, paths, seed)
    process_slide(spec, paths)
    return {
        p.relative_to(paths.root).as_posix(): file_record(p)
        for p in paths.slide_files(spec) + paths.processed_files(spec)
    }
