"""Tests of helpers.labels: vectorised tumor fractions, label_folder, the CLI, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pandas as pd
import pytest

from helpers import labels as L
from helpers.coverage import box_fractions
from helpers.demo import PATCH_SIZE_LEVEL0, CohortPaths, pyramid_levels, write_pyramid

P = 1024  # patch_size_level0
TOL = 0.02  # labels must agree wherever the fraction is farther than this from the threshold


# --------------------------------------------------------------------------------------------
# small fixtures written on the fly


def write_mask(path: Path, mask0: np.ndarray, n_levels: int = 6) -> Path:
    """A tiled pyramidal single-channel TIFF (one page per level) that openslide opens."""
    levels = pyramid_levels(mask0, n_levels, cv2.INTER_NEAREST)
    write_pyramid(path, levels, None, photometric="minisblack", compression="zlib")
    return path


def lesion(rng: np.random.Generator, cx: float, cy: float, r: float, n: int = 32) -> np.ndarray:
    """An irregular polygon, float (n, 2) level-0 (x, y)."""
    a = np.sort(rng.uniform(0, 2 * np.pi, n))
    rr = r * (1 + 0.15 * rng.normal(size=n))
    return np.stack([cx + rr * np.cos(a), cy + rr * np.sin(a)], axis=1)


def write_xml(path: Path, groups: list[tuple[str, np.ndarray]]) -> Path:
    lines = ['<?xml version="1.0"?>', "<ASAP_Annotations>", "<Annotations>"]
    for i, (group, poly) in enumerate(groups):
        lines.append(
            f'<Annotation Name="Annotation {i}" Type="Polygon" PartOfGroup="{group}" '
            'Color="#F4FA58"><Coordinates>'
        )
        # written in reverse order: the Order attribute, not the file order, must count
        for j in reversed(range(len(poly))):
            x, y = poly[j]
            lines.append(f'<Coordinate Order="{j}" X="{x:.3f}" Y="{y:.3f}" />')
        lines.append("</Coordinates></Annotation>")
    lines += ["</Annotations>", "<AnnotationGroups />", "</ASAP_Annotations>"]
    path.write_text("\n".join(lines))
    return path


def rasterise_level0(shape, tumor, exclude) -> np.ndarray:
    """Polygons filled at level 0 (cv2 pixel-centre convention), 1 = tumor."""
    img = np.zeros(shape, np.uint8)
    cv2.fillPoly(img, [np.rint(p * 16).astype(np.int32) for p in tumor], 1, shift=4)
    if exclude:
        cv2.fillPoly(img, [np.rint(p * 16).astype(np.int32) for p in exclude], 0, shift=4)
    return img


def grid(width: int, height: int, step: int = P) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(0, width, step), np.arange(0, height, step))
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)


def write_coords(path: Path, coords: np.ndarray, size, attrs: dict | None = None) -> Path:
    base = {
        "patch_size": 512,
        "patch_size_level0": P,
        "level0_magnification": 40,
        "target_magnification": 20.0,
        "overlap": 0,
        "name": path.name.replace("_patches.h5", ""),
        "level0_width": size[0],
        "level0_height": size[1],
    }
    base.update(attrs or {})
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("coords", data=np.asarray(coords, np.int64))
        for k, v in base.items():
            if v is not None:
                dset.attrs[k] = v
    return path


def assert_labels_match(fast: np.ndarray, ref: np.ndarray, threshold: float = 0.5) -> float:
    """Labels equal wherever the reference is > TOL from the threshold; return the agreement."""
    lf = L.labels_from_fractions(fast, threshold)
    lr = L.labels_from_fractions(ref, threshold)
    far = np.abs(ref - threshold) > TOL
    assert np.array_equal(lf[far], lr[far]), np.flatnonzero(far & (lf != lr))
    agreement = float(np.mean(lf == lr))
    assert agreement >= 0.995
    return agreement


# a 14k x 9k slide: tissue band, two lesions with an exclusion hole, size not a multiple of P
W0, H0 = 14 * P - 300, 9 * P - 500


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    """Mask, XML and coords of one tumor slide, plus a normal slide, in CAMELYON16 layout."""
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(7)
    tumor = [lesion(rng, 4200, 3900, 2300), lesion(rng, 10500, 5200, 1300)]
    exclude = [lesion(rng, 4000, 3800, 600)]
    mask0 = np.zeros((H0, W0), np.uint8)
    mask0[300 : H0 - 300, 200 : W0 - 200] = 1
    mask0[rasterise_level0((H0, W0), tumor, exclude) > 0] = 2
    for d in ("masks", "annotations", "patches"):
        (root / d).mkdir()
    write_mask(root / "masks" / "tumor_001_mask.tif", mask0)
    write_xml(
        root / "annotations" / "tumor_001.xml",
        [("_0", tumor[0]), ("Tumor", tumor[1]), ("_2", exclude[0])],
    )
    coords = grid(W0, H0)
    write_coords(root / "patches" / "tumor_001_patches.h5", coords, (W0, H0))
    write_coords(root / "patches" / "normal_001_patches.h5", coords[:40], (W0, H0))
    pd.DataFrame({"wsi_name": ["normal_001", "tumor_001"], "wsi_label": [0, 1]}).to_csv(
        root / "wsi_labels.csv", index=False
    )
    # patches cut by the slide edge: the part beyond counts as not tumor
    ref = np.array(
        [np.count_nonzero(mask0[y : y + P, x : x + P] == 2) / (P * P) for x, y in coords]
    )
    return {"root": root, "coords": coords, "ref": ref, "mask0": mask0, "tumor": tumor}


# --------------------------------------------------------------------------------------------
# fractions


def test_mask_fractions_match_level0(cohort):
    coords, ref = cohort["coords"], cohort["ref"]
    fast = L.tumor_fraction_from_mask(cohort["root"] / "masks" / "tumor_001_mask.tif", coords, P)
    assert fast.shape == (len(coords),) and fast.dtype == np.float64
    assert fast.min() >= 0 and fast.max() <= 1
    assert np.abs(fast - ref).max() < TOL
    assert (ref > 0.5).sum() >= 10 and ((ref > 0.05) & (ref < 0.95)).sum() >= 10  # a real test
    assert_labels_match(fast, ref)


def test_per_patch_reference_is_exact(cohort):
    coords = cohort["coords"][::5]
    slow = L.tumor_fraction_per_patch(cohort["root"] / "masks" / "tumor_001_mask.tif", coords, P)
    np.testing.assert_allclose(slow, cohort["ref"][::5])


@pytest.mark.slow
def test_mask_fractions_on_an_open_slide_and_a_chosen_level(cohort):
    import openslide

    path = cohort["root"] / "masks" / "tumor_001_mask.tif"
    with openslide.OpenSlide(str(path)) as slide:
        at_level0 = L.tumor_fraction_from_mask(slide, cohort["coords"], P, level=0)
        at_level3 = L.tumor_fraction_from_mask(slide, cohort["coords"], P, level=3)
    np.testing.assert_allclose(at_level0, cohort["ref"])
    assert np.abs(at_level3 - cohort["ref"]).max() < TOL


@pytest.mark.slow
def test_tumor_value_is_a_parameter(cohort):
    path = cohort["root"] / "masks" / "tumor_001_mask.tif"
    coords = cohort["coords"]
    tissue = L.tumor_fraction_from_mask(path, coords, P, tumor_value=1, level=0)
    expected = [
        np.count_nonzero(cohort["mask0"][y : y + P, x : x + P] == 1) / P**2 for x, y in coords
    ]
    np.testing.assert_allclose(tissue, expected)


def test_xml_fractions_match_level0_raster(cohort):
    coords, ref = cohort["coords"], cohort["ref"]
    xml = cohort["root"] / "annotations" / "tumor_001.xml"
    fast = L.tumor_fraction_from_xml(xml, coords, P, level0_size=(W0, H0))
    assert fast.shape == (len(coords),)
    assert np.abs(fast - ref).max() < TOL
    assert_labels_match(fast, ref)


def test_xml_exclusion_groups_are_holes(cohort):
    xml = cohort["root"] / "annotations" / "tumor_001.xml"
    tumor, exclude = L.read_polygons(xml)
    assert len(tumor) == 2 and len(exclude) == 1
    # vertices come back in Order, although the file lists them backwards
    np.testing.assert_allclose(tumor[0], cohort["tumor"][0], atol=1e-3)
    hole_patch = np.array([[4000 - 128, 3800 - 128]])  # a 256 px patch inside the _2 polygon
    assert L.tumor_fraction_from_xml(xml, hole_patch, 256)[0] == 0.0
    beside = np.array([[4000 - 128, 3800 - 128 - 1000]])  # 1000 px above: tumor
    assert L.tumor_fraction_from_xml(xml, beside, 256)[0] == 1.0


def test_xml_unknown_group_warns_and_is_left_out(tmp_path):
    rng = np.random.default_rng(1)
    xml = write_xml(
        tmp_path / "a.xml",
        [("Tumor", lesion(rng, 3000, 3000, 1500)), ("Other", lesion(rng, 8000, 3000, 1500))],
    )
    with pytest.warns(UserWarning, match="Other"):
        fr = L.tumor_fraction_from_xml(xml, np.array([[2560, 2560], [7680, 2560]]), P)
    assert fr[0] > 0.9 and fr[1] == 0.0


def test_fractions_of_no_patches_and_bad_coords(cohort):
    path = cohort["root"] / "masks" / "tumor_001_mask.tif"
    assert L.tumor_fraction_from_mask(path, np.zeros((0, 2), np.int64), P).shape == (0,)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        L.tumor_fraction_from_mask(path, np.zeros((5, 3), np.int64), P)


def test_summed_area_boxes_in_bands_equal_brute_force():
    rng = np.random.default_rng(0)
    tumor_map = rng.uniform(size=(300, 200)) < 0.3
    x0 = rng.integers(-30, 190, 500)
    y0 = rng.integers(-30, 290, 500)
    size = rng.integers(1, 40, 500)
    boxes = np.stack([x0, y0, x0 + size, y0 + size], axis=1)
    padded = np.zeros((400, 300), bool)  # the map sits at (50, 50); outside counts as 0
    padded[50:350, 50:250] = tumor_map
    brute = [padded[b + 50 : d + 50, a + 50 : c + 50].sum() / (c - a) ** 2 for a, b, c, d in boxes]
    for band_pixels in (1, 200 * 37, 10**9):  # one box per band, a few bands, one band
        fr = box_fractions(lambda r0, r1: tumor_map[r0:r1], (200, 300), boxes, band_pixels)
        np.testing.assert_allclose(fr, brute)


def test_labels_from_fractions_is_strictly_greater():
    fr = np.array([0.0, 0.49, 0.5, 0.51, 1.0])
    out = L.labels_from_fractions(fr)
    assert out.dtype == np.int64
    assert out.tolist() == [0, 0, 0, 1, 1]
    assert L.labels_from_fractions(fr, threshold=0.0).tolist() == [0, 1, 1, 1, 1]
    with pytest.raises(ValueError):
        L.labels_from_fractions(fr, threshold=1.0)


def test_relaxed_threshold_halves_until_a_patch_is_positive():
    assert L.relaxed_threshold(np.array([0.1, 0.3]), 0.5) == 0.25
    assert L.relaxed_threshold(np.array([0.7]), 0.5) == 0.5
    assert L.relaxed_threshold(np.zeros(3), 0.5) < 0.002  # gives up at the floor


# --------------------------------------------------------------------------------------------
# files, label_folder, CLI


def test_write_patch_labels_is_atomic(tmp_path):
    out = tmp_path / "sub" / "a.h5"
    L.write_patch_labels(out, np.array([0, 1, 1]), fractions=np.array([0.1, 0.6, 0.9]))
    with h5py.File(out) as f:
        assert f["patch_labels"].dtype == np.int64
        assert f["patch_labels"][:].tolist() == [0, 1, 1]
    with pytest.raises(ValueError):
        L.write_patch_labels(out, np.zeros((2, 2)))  # the old file survives a failed write
    with h5py.File(out) as f:
        assert f["patch_labels"][:].tolist() == [0, 1, 1]
    assert sorted(p.name for p in out.parent.iterdir()) == ["a.h5"]


def run_folder(root: Path, save: Path, **kw) -> pd.DataFrame:
    kw.setdefault("masks_dir", root / "masks")
    return L.label_folder(
        root / "wsi_labels.csv", root / "patches", save, patch_size=P, progress=False, **kw
    )


def test_label_folder_from_masks(cohort, tmp_path):
    root = cohort["root"]
    table = run_folder(root, tmp_path / "labels")
    assert list(table["name"]) == ["normal_001", "tumor_001"]
    assert list(table["source"]) == ["none", "mask"]
    with h5py.File(tmp_path / "labels" / "tumor_001.h5") as f:
        labels = f["patch_labels"][:]
    assert labels.dtype == np.int64 and labels.shape == (len(cohort["coords"]),)
    assert_labels_match(labels.astype(float), cohort["ref"])  # 0/1 compare as fractions
    assert table.loc[1, "n_positive"] == labels.sum() > 0
    with h5py.File(tmp_path / "labels" / "normal_001.h5") as f:
        assert f["patch_labels"].shape == (40,) and not f["patch_labels"][:].any()


def test_label_folder_from_xml_when_there_is_no_mask(cohort, tmp_path):
    root = cohort["root"]
    table = run_folder(
        root, tmp_path / "labels", masks_dir=None, annotations_dir=root / "annotations"
    )
    assert list(table["source"]) == ["none", "xml"]
    with h5py.File(tmp_path / "labels" / "tumor_001.h5") as f:
        labels = f["patch_labels"][:]
    assert_labels_match(labels.astype(float), cohort["ref"])


def test_normal_slides_read_no_mask(cohort, tmp_path):
    root = tmp_path / "c"
    (root / "masks").mkdir(parents=True)
    (root / "patches").mkdir()
    for name in ("normal_001", "tumor_001"):
        src = cohort["root"] / "patches" / f"{name}_patches.h5"
        (root / "patches" / src.name).write_bytes(src.read_bytes())
    (root / "wsi_labels.csv").write_text("wsi_name,wsi_label\nnormal_001,0\n")
    (root / "masks" / "normal_001_mask.tif").write_bytes(b"not a tiff")  # never opened
    table = run_folder(root, tmp_path / "labels")
    assert table["n_positive"].tolist() == [0]


def test_relax_threshold_is_explicit(cohort, tmp_path, capsys):
    root = cohort["root"]
    # a small lesion: no patch is half tumor, one patch is about a third tumor
    mask0 = np.zeros((H0, W0), np.uint8)
    cv2.circle(mask0, (5 * P + 512, 3 * P + 512), 330, 2, -1)
    write_mask(tmp_path / "tumor_001_mask.tif", mask0)
    strict = run_folder(root, tmp_path / "strict", masks_dir=tmp_path)
    assert strict.loc[1, "n_positive"] == 0 and not strict.loc[1, "relaxed"]
    assert "tumor slides with no patch above 0.5: tumor_001" in L.summary_line(strict)
    relaxed = run_folder(root, tmp_path / "relaxed", masks_dir=tmp_path, relax_threshold=True)
    assert relaxed.loc[1, "n_positive"] >= 1 and relaxed.loc[1, "relaxed"]
    assert relaxed.loc[1, "threshold"] == 0.25
    assert "relaxed to 0.25" in capsys.readouterr().err
    assert "threshold relaxed for tumor_001 (0.25)" in L.summary_line(relaxed)


def test_cli_with_the_earlier_arguments(cohort, tmp_path, capsys):
    root = cohort["root"]
    args = [
        "--csv_path", str(root / "wsi_labels.csv"),
        "--masks_dir", str(root / "masks"),
        "--coords_dir", str(root / "patches"),
        "--save_dir", str(tmp_path / "out"),
        "--patch_size", "1024",
        "--patch_level", "0",
        "--threshold", "0.5",
        "--no_progress",
    ]  # fmt: skip
    assert L.main(args) == 0
    assert "2 slides labelled (1 from masks, 0 from XML, 1 normal)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["normal_001.h5", "tumor_001.h5"]
    # the same at patch_level 1: 512 px at a level of downsample 2
    args[args.index("--patch_size") + 1] = "512"
    args[args.index("--patch_level") + 1] = "1"
    args[args.index("--save_dir") + 1] = str(tmp_path / "out1")
    assert L.main(args) == 0


# --------------------------------------------------------------------------------------------
# bad input: a clear error, nothing written


def bad_case(cohort, tmp_path, csv: str | None = None) -> Path:
    """A copy of the cohort that a test can break."""
    root = tmp_path / "c"
    for sub in ("masks", "annotations", "patches"):
        (root / sub).mkdir(parents=True)
        for src in (cohort["root"] / sub).iterdir():
            (root / sub / src.name).write_bytes(src.read_bytes())
    (root / "wsi_labels.csv").write_text(csv or (cohort["root"] / "wsi_labels.csv").read_text())
    return root


def expect_error(root: Path, tmp_path: Path, match: str, **kw) -> None:
    with pytest.raises((L.LabelInputError, FileNotFoundError), match=match):
        run_folder(root, tmp_path / "labels", **kw)
    assert not (tmp_path / "labels").exists() or not any((tmp_path / "labels").iterdir())


def test_error_patch_size_differs_from_the_h5_attributes(cohort, tmp_path):
    root = bad_case(cohort, tmp_path)
    with pytest.raises(L.LabelInputError, match="patch_size_level0=1024"):
        L.label_folder(root / "wsi_labels.csv", root / "patches", tmp_path / "labels",
                       masks_dir=root / "masks", patch_size=512, progress=False)  # fmt: skip
    assert not (tmp_path / "labels").exists()


def test_error_spacing_without_attributes(cohort, tmp_path):
    root = bad_case(cohort, tmp_path)
    coords = grid(W0, H0, step=512)[:50]
    write_coords(root / "patches" / "tumor_001_patches.h5", coords, (W0, H0),
                 {"patch_size_level0": None, "overlap": None})  # fmt: skip
    expect_error(root, tmp_path, "spaced by 512")


def test_error_mask_of_another_size(cohort, tmp_path):
    root = bad_case(cohort, tmp_path)
    write_mask(root / "masks" / "tumor_001_mask.tif", np.zeros((H0 - 64, W0), np.uint8))
    expect_error(root, tmp_path, f"{W0}x{H0 - 64} at level 0 but the slide is {W0}x{H0}")
    with pytest.raises(L.LabelInputError, match="another slide"):
        L.tumor_fraction_from_mask(root / "masks" / "tumor_001_mask.tif", cohort["coords"], P,
                                   level0_size=(W0, H0))  # fmt: skip


def test_error_tumor_slide_without_mask_or_xml(cohort, tmp_path):
    root = bad_case(cohort, tmp_path)
    (root / "masks" / "tumor_001_mask.tif").unlink()
    expect_error(root, tmp_path, "tumor_001: tumor slide with neither", annotations_dir=None)
    with pytest.raises(L.LabelInputError, match="mask or an XML"):
        L.label_slide(cohort["coords"], P)


def test_error_name_without_coords(cohort, tmp_path):
    root = bad_case(cohort, tmp_path, "wsi_name,wsi_label\nnormal_001,0\ntumor_009,1\n")
    expect_error(root, tmp_path, "tumor_009: no coords file")


def test_error_unreadable_files(cohort, tmp_path):
    root = bad_case(cohort, tmp_path)
    (root / "masks" / "tumor_001_mask.tif").write_bytes(b"II*\x00garbage")
    expect_error(root, tmp_path, "cannot read mask")
    (root / "masks" / "tumor_001_mask.tif").unlink()
    (root / "annotations" / "tumor_001.xml").write_text("<ASAP_Annotations><Annot")
    expect_error(root, tmp_path, "cannot read annotation", annotations_dir=root / "annotations")
    (root / "patches" / "normal_001_patches.h5").write_bytes(b"garbage")
    expect_error(root, tmp_path, "cannot read coords file")
    (root / "wsi_labels.csv").write_text("name,label\nnormal_001,0\n")
    expect_error(root, tmp_path, "needs columns wsi_name,wsi_label")


def test_cli_reports_errors(cohort, tmp_path, capsys):
    root = bad_case(cohort, tmp_path, "wsi_name,wsi_label\ntumor_404,1\n")
    rc = L.main(
        ["--csv_path", str(root / "wsi_labels.csv"), "--coords_dir", str(root / "patches"),
         "--save_dir", str(tmp_path / "out"), "--masks_dir", str(root / "masks")]
    )  # fmt: skip
    assert rc == 2
    assert "tumor_404: no coords file" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------
# the demo cohort


def test_demo_labels_match_per_patch_level0_reference(demo_dir):
    P = PATCH_SIZE_LEVEL0  # the demo's own (512 level-0 px at 20x), not the 40x fixtures' 1024
    paths = CohortPaths(demo_dir)
    table = pd.read_csv(demo_dir / "wsi_labels.csv")
    tumor_names = table.loc[table["wsi_label"] == 1, "wsi_name"].tolist()
    assert len(tumor_names) >= 5
    fast_all, xml_all, ref_all = [], [], []
    for name in tumor_names:
        attrs, coords = L.read_coords(paths.coords_path(name), P)
        size = (int(attrs["level0_width"]), int(attrs["level0_height"]))
        mask = paths.mask(name)
        fast = L.tumor_fraction_from_mask(mask, coords, P, level0_size=size)
        xml = L.tumor_fraction_from_xml(paths.xml(name), coords, P, size)
        with h5py.File(paths.patch_labels_path(name)) as f:
            stored = f["patch_labels"][:]
        assert len(stored) == len(coords)
        # the slow reference (one level-0 read per patch) on every patch that the mask, the
        # XML or the stored labels put any tumour in, and on 40 others spread over the bag
        # (bags reach 1,300 patches: all of them would take most of a minute)
        near = (fast > 0) | (xml > 0) | (stored > 0)
        spread = np.linspace(0, len(coords) - 1, 40).round().astype(int)
        keep = np.union1d(np.flatnonzero(near), spread)
        coords, fast, xml, stored = coords[keep], fast[keep], xml[keep], stored[keep]
        ref = L.tumor_fraction_per_patch(mask, coords, P)
        far = np.abs(ref - 0.5) > TOL
        assert np.array_equal(stored[far], L.labels_from_fractions(ref)[far]), name
        fast_all.append(fast), xml_all.append(xml), ref_all.append(ref)
    fast, xml, ref = (np.concatenate(a) for a in (fast_all, xml_all, ref_all))
    assert (ref > 0.5).sum() > 0
    assert np.abs(fast - ref).max() < TOL
    assert_labels_match(fast, ref)
    # the XML polygons give the same labels (the demo masks are drawn from them, inside tissue)
    assert_labels_match(xml, ref)


def test_overlapping_tumour_polygons_are_a_union(tmp_path):
    """Two annotations over the same area: the overlap is tumour, not a hole (cv2.fillPoly
    given both at once would cut it out)."""
    square = np.array([[0, 0], [4096, 0], [4096, 4096], [0, 4096]], dtype=float)
    xml = write_xml(tmp_path / "b.xml", [("Tumor", square), ("_0", square + 1024)])
    coords = np.array([[1024, 1024], [2048, 2048], [4096, 4096], [6144, 6144]])
    fr = L.tumor_fraction_from_xml(xml, coords, 1024, level0_size=(8192, 8192))
    assert fr[0] == pytest.approx(1.0) and fr[1] == pytest.approx(1.0)
    assert fr[2] == pytest.approx(1.0) and fr[3] == 0.0
