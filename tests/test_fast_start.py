"""Fast start (issue 12): ``setup()`` writes the demo's h5 files from shipped arrays, and a
slide's pixels are painted when a chapter asks for it (``cfg.ensure_slides``); both are
byte-identical to a full build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from helpers import demo
from helpers.labels import label_slide
from helpers.settings import load_settings, setup

SIZES = ((0, 1), (1, 0))  # tumor_001 and test_001 (normal): two small sections


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name not in (demo.MANIFEST, demo.MARKER)
    }


@pytest.mark.slow
def test_lazy_cohort_is_byte_identical_to_a_full_build(tmp_path, monkeypatch):
    root = tmp_path / "demo"
    demo.make_cohort(root, seed=2, sizes=SIZES, workers=1, quiet=True)
    full = _files(root)
    monkeypatch.setattr(demo.fast_start, "PACKED", demo.pack_arrays(root, tmp_path / "packed.npz"))
    shutil.rmtree(root)

    demo.make_cohort(root, seed=2, sizes=SIZES, lazy=True, quiet=True)
    now = _files(root)
    assert not any(rel.startswith(("wsis/", "masks/", "annotations/")) for rel in now)
    assert now == {rel: data for rel, data in full.items() if rel in now}
    assert set(full) - set(now) == {
        rel
        for rel in full
        if rel.startswith(("wsis/", "masks/", "annotations/", "trident_processed/thumbnails/"))
    }
    # a lazy cohort is complete for setup() (lazy) but not for a full check
    assert demo.make_cohort(root, seed=2, sizes=SIZES, lazy=True, quiet=True) == root

    # the path getters only look: they never paint
    monkeypatch.setenv("MIL_BOOK_DEMO_DIR", str(root))
    cfg = load_settings()
    with pytest.raises(FileNotFoundError, match=r"cfg\.ensure_slides\('tumor_001'\)"):
        cfg.wsi_path("tumor_001")
    assert cfg.mask_path("tumor_001") is None and cfg.annotation_path("tumor_001") is None
    assert not cfg.thumbnail_path("tumor_001").exists()
    # a chapter asks for the slides it opens: the same bytes as a full build
    cfg.ensure_slides("tumor_001", "test_001")
    cfg.ensure_slides("tumor_001")  # made already: only a check
    assert cfg.wsi_path("tumor_001").read_bytes() == full["wsis/tumor_001.tif"]
    assert cfg.mask_path("tumor_001").read_bytes() == full["masks/tumor_001_mask.tif"]
    assert cfg.annotation_path("tumor_001").read_bytes() == full["annotations/tumor_001.xml"]
    thumb = "trident_processed/thumbnails/tumor_001.jpg"
    assert cfg.thumbnail_path("tumor_001").read_bytes() == full[thumb]
    assert cfg.annotation_path("test_001") is None  # a normal slide has no XML
    assert json.loads((root / demo.MANIFEST).read_text())["pending"] == []
    assert _files(root) == full
    with pytest.raises(FileNotFoundError):
        cfg.wsi_path("no_such_slide")
    with pytest.raises(FileNotFoundError):
        cfg.ensure_slides("no_such_slide")
    # nothing is left to make: a full check passes without building
    monkeypatch.setattr(demo.build, "build_slides", lambda *a: pytest.fail("rebuilt"))
    demo.make_cohort(root, seed=2, sizes=SIZES, quiet=True)


@pytest.mark.slow
def test_a_full_build_finishes_a_lazy_cohort(tmp_path, monkeypatch):
    root = tmp_path / "demo"
    demo.make_cohort(root, seed=2, sizes=((0, 0), (1, 0)), workers=1, quiet=True)
    monkeypatch.setattr(demo.fast_start, "PACKED", demo.pack_arrays(root, tmp_path / "packed.npz"))
    full = _files(root)
    shutil.rmtree(root)
    demo.make_cohort(root, seed=2, sizes=((0, 0), (1, 0)), lazy=True, quiet=True)
    demo.make_cohort(root, seed=2, sizes=((0, 0), (1, 0)), workers=1, quiet=True)
    assert _files(root) == full
    assert json.loads((root / demo.MANIFEST).read_text())["pending"] == []


@pytest.mark.slow
def test_shipped_arrays_are_what_the_pixels_give(tmp_path):
    """The arrays shipped for the fast start equal a fresh computation from a slide's pixels
    (rebuild them with ``python -m helpers.demo --force --pack`` when this fails)."""
    specs = demo.plan_cohort(0)
    spec = next(s for s in specs if s.kind == "micro" and s.split == "test")
    paths = demo.CohortPaths(tmp_path)
    demo.make_slide(spec, paths, 0)
    demo.process_slide(spec, paths)
    with np.load(demo.PACKED) as data:
        meta = json.loads(data["meta"].tobytes())
        assert meta["seed"] == 0 and meta["sizes"] == [list(x) for x in demo.DEFAULT_SIZES]
        assert {s.name for s in specs} == set(meta["level0_size"])
        with h5py.File(paths.features_path(spec.name), "r") as f:
            assert f["features"][:].tobytes() == data[f"{spec.name}/features"].tobytes()
            assert f["coords"][:].tobytes() == data[f"{spec.name}/coords"].tobytes()
            attrs = f["coords"].attrs
            assert [attrs["level0_width"], attrs["level0_height"]] == meta["level0_size"][spec.name]
            size0 = int(attrs["patch_size_level0"])
        labels, fractions, _ = label_slide(
            data[f"{spec.name}/coords"], size0, mask=paths.mask(spec.name)
        )
        assert np.array_equal(labels, data[f"{spec.name}/labels"])
        assert np.array_equal(fractions.astype(np.float32), data[f"{spec.name}/fractions"])


def test_setup_on_an_empty_folder_writes_only_the_h5_files(tmp_path, monkeypatch):
    monkeypatch.setenv("MIL_BOOK_DEMO_DIR", str(tmp_path / "demo"))
    cfg = setup(verbose=False)
    names = [s.name for s in demo.plan_cohort(0)]
    assert all(cfg.features_path(n).is_file() and cfg.patch_labels_path(n).is_file() for n in names)
    assert not (tmp_path / "demo" / "wsis").exists()
    assert cfg.train_csv.is_file() and cfg.test_csv.is_file()


def test_the_shipped_arrays_are_in_the_package():
    """A missing helpers/demo_h5.npz is a broken package (a failure, never a skip): the fast
    start of every chapter reads it."""
    assert demo.PACKED.is_file(), f"{demo.PACKED} is missing: `python -m helpers.demo --pack`"
