"""The fast start: the demo's small h5 files from arrays shipped with the package
(:data:`PACKED`), byte-identical to a full build, and a slide's pixels painted only when
:func:`ensure_slide` asks for them."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from helpers.demo.manifest import FileRecord, Manifest, file_record, same_plan, writable
from helpers.demo.paint import make_slide
from helpers.demo.plan import (
    LEVEL0_MAG,
    PATCH_SIZE,
    PATCH_SIZE_LEVEL0,
    TARGET_MAG,
    CohortError,
    CohortPaths,
    SlideSpec,
)
from helpers.demo.safety import lock_path, save_marker
from helpers.demo.tables import write_tables
from helpers.fileio import atomic_path, file_lock
from helpers.layout import DEMO_ENCODER

#: The arrays of the seed-0 cohort's h5 files (:func:`pack_arrays`).
PACKED = Path(__file__).resolve().parents[1] / "demo_h5.npz"


def pack_arrays(root: str | os.PathLike, out: str | os.PathLike = PACKED) -> Path:
    """Save the arrays of a complete cohort's h5 files (coords, features, patch labels) in
    one ``.npz``: what :func:`helpers.demo.make_cohort` with ``lazy=True`` writes the h5
    files from."""
    import h5py

    from helpers.formats.h5 import h5_array, h5_attrs

    root, out = Path(root), Path(out)
    m = Manifest.read(root)
    if m is None or not m.complete or m.pending:
        raise CohortError(f"{root} holds no complete demo cohort to pack.")
    paths = CohortPaths(root)
    arrays, sizes = {}, {}
    for s in m.specs():
        with h5py.File(paths.features_path(s.name), "r") as f:
            arrays[f"{s.name}/features"] = h5_array(f, "features")
            arrays[f"{s.name}/coords"] = h5_array(f, "coords")
            attrs = h5_attrs(f, "coords")
            sizes[s.name] = [int(attrs["level0_width"]), int(attrs["level0_height"])]
        with h5py.File(paths.patch_labels_path(s.name), "r") as f:
            arrays[f"{s.name}/labels"] = h5_array(f, "patch_labels")
            arrays[f"{s.name}/fractions"] = h5_array(f, "tumor_fraction")
    meta = m.plan | {"level0_size": sizes}
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with atomic_path(out) as tmp:
        np.savez_compressed(tmp, **arrays)
    return out


def _unpack(root: Path, specs: list[SlideSpec], packed: Path) -> dict[str, FileRecord]:
    """Write the h5 files of ``specs`` from ``packed`` arrays exactly as a full build writes
    them; return their records."""
    from helpers.formats import save_coords, save_features, write_patch_labels
    from helpers.trident import grid_attributes

    paths = CohortPaths(root)
    records = {}
    with np.load(packed) as data:
        meta = json.loads(data["meta"].tobytes())
        for s in specs:
            coords_level0 = data[f"{s.name}/coords"]
            coords_path = paths.coords_path(s.name)
            attrs = grid_attributes(
                meta["level0_size"][s.name],
                LEVEL0_MAG,
                s.name,
                coords_path.parent,
                PATCH_SIZE,
                TARGET_MAG,
            )
            save_coords(coords_path, coords_level0, attrs)
            feats = data[f"{s.name}/features"]
            save_features(paths.features_path(s.name), feats, coords_level0, attrs, DEMO_ENCODER)
            write_patch_labels(
                paths.patch_labels_path(s.name),
                data[f"{s.name}/labels"],
                fractions=data[f"{s.name}/fractions"],
                attrs={
                    "threshold": 0.5,
                    "source": "mask" if s.label else "none",
                    "patch_size_level0": PATCH_SIZE_LEVEL0,
                },
            )
            for p in (coords_path, paths.features_path(s.name), paths.patch_labels_path(s.name)):
                records[p.relative_to(root).as_posix()] = file_record(p)
    return records


def packed_matches(packed: Path, seed: int, sizes: tuple) -> bool:
    """Whether ``packed`` holds the arrays of this version's cohort for ``seed``, ``sizes``."""
    if not packed.is_file():
        return False
    try:
        with np.load(packed) as data:
            meta = json.loads(data["meta"].tobytes())
    except (OSError, ValueError, KeyError):
        return False
    return same_plan(meta, seed, sizes)


def make_lazy(
    root: Path, m: Manifest, specs: list[SlideSpec], packed: Path, say: Callable[..., None]
) -> Path:
    """The fast start: h5 files from the shipped arrays, the CSVs; pixels made on demand."""
    root.mkdir(parents=True, exist_ok=True)
    save_marker(root, m.plan)
    t0 = time.perf_counter()
    m.pending = [s.name for s in specs]
    m.save(root)
    m.files.update(_unpack(root, specs, packed))
    write_tables(root, specs, m.files)
    m.complete = True
    m.save(root)
    say(
        f"Demo cohort's features and labels written to {root} in "
        f"{time.perf_counter() - t0:.1f} s; each slide's pixels are made when a chapter asks for "
        "them (cfg.ensure_slides; python -m helpers.demo makes them all)."
    )
    return root


def ensure_slide(root: str | os.PathLike, name: str) -> bool:
    """Paint slide ``name`` of a cohort made with ``lazy=True`` if it is not made yet.

    Its TIFF pyramid, mask, XML and thumbnail come from the same seed as a full build (so
    the same pixels the shipped features were computed from).

    Arguments:
        root: the cohort's folder.
        name: the slide.

    Returns:
        ``True`` when ``name`` belongs to such a cohort's pending slides (now made).
    """
    import openslide

    from helpers.formats import save_thumbnail

    root = Path(root)
    m = Manifest.read(root)
    if m is None or name not in m.pending:
        return False
    if not writable(root):
        raise CohortError(f"{root} is not writable: cannot make the slide {name}.")
    with file_lock(lock_path(root)):
        m = Manifest.read(root)
        if m is None or name not in m.pending:
            return True
        spec = next(s for s in m.specs() if s.name == name)
        paths = CohortPaths(root)
        make_slide(spec, paths, m.seed)
        with openslide.OpenSlide(str(paths.wsi(name))) as slide:
            save_thumbnail(slide, paths.thumbnail_path(name))
        for p in paths.slide_files(spec) + [paths.thumbnail_path(name)]:
            m.files[p.relative_to(root).as_posix()] = file_record(p)
        m.pending.remove(name)
        m.save(root)
    return True
