"""helpers.labels under bad input: no silent all-zero labels, clear messages, all-or-nothing
writes (issue 9). Small synthetic slides: 512 x 512 px, 64-px patches."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from helpers import labels as L
from helpers.demo import aperio_description, pyramid_levels, write_pyramid
from helpers.formats import LabelInputError, read_labels_csv, write_patch_labels
from helpers.reference import tumor_fraction_per_patch

P = 64  # patch_size_level0
SIZE = 512


def write_mask(path: Path, mask0: np.ndarray) -> Path:
    levels = pyramid_levels(mask0, 2, cv2.INTER_NEAREST)
    write_pyramid(path, levels, None, photometric="minisblack", compression="zlib")
    return path


def write_slide(path: Path, width: int, height: int) -> Path:
    rgb = np.full((height, width, 3), 230, np.uint8)
    write_pyramid(
        path,
        pyramid_levels(rgb, 2, cv2.INTER_AREA),
        aperio_description(width, height),
        photometric="rgb",
        compression="jpeg",
    )
    return path


def write_coords(path: Path, size_attrs: bool = True) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(0, SIZE, P), np.arange(0, SIZE, P))
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)
    attrs = {"patch_size": P, "patch_size_level0": P, "overlap": 0}
    if size_attrs:
        attrs |= {"level0_width": SIZE, "level0_height": SIZE}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("coords", data=coords).attrs.update(attrs)
    return coords


def tumour_mask(tumour_value: int, shape=(SIZE, SIZE)) -> np.ndarray:
    mask = np.ones(shape, np.uint8) if tumour_value != 1 else np.zeros(shape, np.uint8)
    mask[128:320, 128:320] = tumour_value  # 9 whole patches
    return mask


@pytest.fixture
def folder(tmp_path):
    """normal_001 and tumor_001 with coords (size attributes), a book-style mask (2 = tumour)."""
    coords_dir = tmp_path / "patches"
    for name in ("normal_001", "tumor_001"):
        write_coords(coords_dir / f"{name}_patches.h5")
    (tmp_path / "masks").mkdir()
    write_mask(tmp_path / "masks" / "tumor_001_mask.tif", tumour_mask(2))
    csv = tmp_path / "labels.csv"
    csv.write_text("wsi_name,wsi_label\nnormal_001,0\ntumor_001,1\n")
    return tmp_path


def run(folder: Path, **kw):
    args = {
        "csv_path": folder / "labels.csv",
        "coords_dir": folder / "patches",
        "save_dir": folder / "out",
        "masks_dir": folder / "masks",
        "patch_size": P,
        "progress": False,
    } | kw
    return L.label_folder(**args)


def cli(folder: Path, *extra: str) -> list[str]:
    return [
        "--csv_path",
        str(folder / "labels.csv"),
        "--coords_dir",
        str(folder / "patches"),
        "--save_dir",
        str(folder / "out"),
        "--masks_dir",
        str(folder / "masks"),
        "--patch_size",
        str(P),
        "--no_progress",
        *extra,
    ]


def test_the_good_case(folder):
    table = run(folder)
    assert table.set_index("name").n_positive.to_dict() == {"normal_001": 0, "tumor_001": 9}


def test_binary_mask_with_the_default_tumor_value_is_an_error(folder, capsys):
    write_mask(folder / "masks" / "tumor_001_mask.tif", tumour_mask(1))
    with pytest.raises(LabelInputError) as err:
        run(folder)
    msg = str(err.value)
    assert "tumor_001" in msg and "no pixel of value 2" in msg
    assert "--tumor_value 1" in msg and "nothing was written" in msg
    assert not (folder / "out").exists() or not any((folder / "out").iterdir())
    assert L.main(cli(folder)) == 2
    assert "--tumor_value 1" in capsys.readouterr().err
    # with the right value it labels the tumour
    assert L.main(cli(folder, "--tumor_value", "1")) == 0
    with h5py.File(folder / "out" / "tumor_001.h5") as f:
        assert int(f["patch_labels"][:].sum()) == 9


def test_mask_size_is_checked_against_the_slide_without_size_attributes(folder):
    write_coords(folder / "patches" / "tumor_001_patches.h5", size_attrs=False)
    (folder / "wsis").mkdir()
    for name in ("normal_001", "tumor_001"):
        write_slide(folder / "wsis" / f"{name}.tif", SIZE, SIZE)
    # a mask of another slide, larger: every patch lies on it, so only the slide can tell
    write_mask(folder / "masks" / "tumor_001_mask.tif", tumour_mask(2, (SIZE + 128, SIZE + 64)))
    with pytest.raises(LabelInputError, match="the slide is 512x512.*mask of another slide"):
        run(folder, wsi_dir=folder / "wsis")
    # without the slides it cannot be checked: a warning says so and how to check
    with pytest.warns(UserWarning, match="--wsi_dir"):
        run(folder)
    # a smaller mask leaves patches beyond it: an error even without the slides
    write_mask(folder / "masks" / "tumor_001_mask.tif", tumour_mask(2, (SIZE - 128, SIZE)))
    with pytest.raises(LabelInputError, match="lie beyond it"):
        run(folder)
    # the right mask passes the check against the slide
    write_mask(folder / "masks" / "tumor_001_mask.tif", tumour_mask(2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert run(folder, wsi_dir=folder / "wsis").n_positive.sum() == 9


@pytest.mark.parametrize(("size", "level"), [(0, 0), (-64, 0), (64, -1)])
def test_patch_size_must_be_positive(folder, size, level, capsys):
    with pytest.raises(LabelInputError, match="--patch_(size|level) must be"):
        run(folder, patch_size=size, patch_level=level)
    argv = cli(folder, "--patch_level", str(level))
    argv[argv.index("--patch_size") + 1] = str(size)
    assert L.main(argv) == 2
    assert "must be" in capsys.readouterr().err


def test_save_dir_that_is_a_file(folder, capsys):
    (folder / "out").write_text("not a folder")
    with pytest.raises(LabelInputError, match="is a file, not a folder"):
        run(folder)
    assert L.main(cli(folder)) == 2
    assert "--save_dir" in capsys.readouterr().err
    assert (folder / "out").read_text() == "not a folder"


def test_save_dir_that_is_not_writable(folder, monkeypatch, capsys):
    """Faked with os.access (the test-suite may run as root, who can write anywhere)."""
    (folder / "out").mkdir()
    real = os.access
    monkeypatch.setattr(
        os, "access", lambda p, m, **k: False if Path(p) == folder / "out" else real(p, m)
    )
    with pytest.raises(LabelInputError, match="not readable and writable"):
        run(folder)
    assert L.main(cli(folder)) == 2
    assert "--save_dir" in capsys.readouterr().err


def test_a_failed_write_leaves_nothing(folder, monkeypatch):
    write_patch_labels(folder / "out" / "normal_001.h5", np.ones(64, np.int64))  # older labels
    older = (folder / "out" / "normal_001.h5").read_bytes()
    real = L.folder.write_patch_labels_h5
    calls = []

    def fail_second(path, *args):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, *args)

    monkeypatch.setattr(L.folder, "write_patch_labels_h5", fail_second)
    with pytest.raises(LabelInputError, match="No space left.*nothing was written"):
        run(folder)
    assert sorted(p.name for p in (folder / "out").iterdir()) == ["normal_001.h5"]
    assert (folder / "out" / "normal_001.h5").read_bytes() == older


def write_xml(path: Path, group: str | None) -> Path:
    ann = ""
    if group is not None:
        pts = [(128, 128), (320, 128), (320, 320), (128, 320)]
        coords = "".join(
            f'<Coordinate Order="{i}" X="{x}" Y="{y}" />' for i, (x, y) in enumerate(pts)
        )
        ann = (
            f'<Annotation Name="A" Type="Polygon" PartOfGroup="{group}">'
            f"<Coordinates>{coords}</Coordinates></Annotation>"
        )
    path.write_text(f"<ASAP_Annotations><Annotations>{ann}</Annotations></ASAP_Annotations>")
    return path


@pytest.mark.parametrize(("group", "found"), [("Lymphocytes", "Lymphocytes"), (None, "no annot")])
def test_xml_without_a_tumour_group_is_an_error(folder, group, found):
    (folder / "masks" / "tumor_001_mask.tif").unlink()
    (folder / "xml").mkdir()
    write_xml(folder / "xml" / "tumor_001.xml", group)
    with pytest.raises(LabelInputError, match="no tumor polygon") as err:
        run(folder, annotations_dir=folder / "xml")
    assert found in str(err.value) and "tumor_001.xml" in str(err.value)
    assert not (folder / "out").exists()
    write_xml(folder / "xml" / "tumor_001.xml", "Tumor")
    assert run(folder, annotations_dir=folder / "xml").n_positive.sum() == 9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("wsi_name,wsi_label\n", "has a header but no rows"),
        ("wsi_name,wsi_label\nnormal_001,\n", r"line 2: normal_001,\(blank label\)"),
        ("wsi_name,wsi_label\nnormal_001,2\n", "line 2: normal_001,2"),
        ("wsi_name,wsi_label\nnormal_001,0\ntumor_001,yes\n", "line 3: tumor_001,yes"),
        ("wsi_name,wsi_label\n,1\n", "wsi_name is blank"),
        ("wsi_name,wsi_label\na,0\na,1\n", "more than once"),
        ("name,label\na,0\n", "needs columns wsi_name,wsi_label"),
    ],
)
def test_labels_csv_is_validated(folder, text, message, capsys):
    csv = folder / "labels.csv"
    csv.write_text(text)
    with pytest.raises(LabelInputError, match=message) as err:
        read_labels_csv(csv)
    assert str(csv) in str(err.value)
    assert L.main(cli(folder)) == 2
    assert str(csv) in capsys.readouterr().err


def test_read_labels_csv_types():
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "l.csv"
        csv.write_text("wsi_name,wsi_label\n 001 ,1.0\nb,0\n")
        table = read_labels_csv(csv)
    assert table.wsi_name.tolist() == ["001", "b"]
    assert table.wsi_label.tolist() == [1, 0] and table.wsi_label.dtype.kind == "i"


# --------------------------------------------------------------------------------------------
# a cohort that mixes patch sizes (40x and 20x slides under one TRIDENT job:
# patch_size_level0 1024 and 512 on real data; 64 and 128 here). Without --patch_size every
# slide is labelled with the patch_size_level0 its own coords file records; one --patch_size
# for all is refused with a message naming the slide.

MIXED_SIZES = {"tumor_040x": 64, "tumor_020x": 128, "normal_020x": 128}


def write_grid_coords(path: Path, patch_size_level0: int | None) -> np.ndarray:
    step = patch_size_level0 or 64
    xs, ys = np.meshgrid(np.arange(0, SIZE, step), np.arange(0, SIZE, step))
    coords_level0 = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)
    attrs = {"overlap": 0, "level0_width": SIZE, "level0_height": SIZE}
    if patch_size_level0 is not None:  # TRIDENT stores it as a float
        attrs |= {"patch_size": 512, "patch_size_level0": float(patch_size_level0)}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("coords", data=coords_level0).attrs.update(attrs)
    return coords_level0


@pytest.fixture
def mixed(tmp_path):
    (tmp_path / "masks").mkdir()
    for name, size in MIXED_SIZES.items():
        write_grid_coords(tmp_path / "patches" / f"{name}_patches.h5", size)
        if name.startswith("tumor"):  # tumour at 128:320 in x and y
            write_mask(tmp_path / "masks" / f"{name}_mask.tif", tumour_mask(2))
    rows = "".join(f"{n},{int(n.startswith('tumor'))}\n" for n in MIXED_SIZES)
    (tmp_path / "labels.csv").write_text("wsi_name,wsi_label\n" + rows)
    return tmp_path


def mixed_argv(folder: Path, *extra: str) -> list[str]:
    return [
        "--csv_path", str(folder / "labels.csv"),
        "--coords_dir", str(folder / "patches"),
        "--save_dir", str(folder / "out"),
        "--masks_dir", str(folder / "masks"),
        "--no_progress", *extra,
    ]  # fmt: skip


def test_each_slide_is_labelled_at_its_own_patch_size(mixed, capsys):
    assert L.main(mixed_argv(mixed)) == 0
    assert "3 slides labelled" in capsys.readouterr().out
    # 9 whole 64-px patches are tumour; of the 128-px patches only (128, 128) is over half
    expected = {"tumor_040x": 9, "tumor_020x": 1, "normal_020x": 0}
    for name, size in MIXED_SIZES.items():
        with h5py.File(mixed / "out" / f"{name}.h5", "r") as f:
            labels = f["patch_labels"][:]
            fractions = f["tumor_fraction"][:]
            assert f["patch_labels"].attrs["patch_size_level0"] == size
        with h5py.File(mixed / "patches" / f"{name}_patches.h5", "r") as f:
            coords_level0 = f["coords"][:]
        assert len(labels) == (SIZE // size) ** 2 and labels.sum() == expected[name]
        if name.startswith("tumor"):  # the level-0 reference, at the slide's own size
            mask = mixed / "masks" / f"{name}_mask.tif"
            reference = tumor_fraction_per_patch(mask, coords_level0, size)
            np.testing.assert_allclose(fractions, reference, atol=1e-6)


def test_one_patch_size_for_a_mixed_cohort_names_the_slide_that_differs(mixed, capsys):
    assert L.main(mixed_argv(mixed, "--patch_size", "64")) == 2
    err = capsys.readouterr().err
    assert "tumor_020x" in err and "patch_size_level0=128" in err
    assert "leave --patch_size out" in err
    assert "tumor_040x" not in err  # that one matches
    assert not (mixed / "out").exists()  # all or nothing


def test_a_coords_file_without_patch_size_level0_needs_patch_size(mixed, capsys):
    write_grid_coords(mixed / "patches" / "normal_020x_patches.h5", None)
    assert L.main(mixed_argv(mixed)) == 2
    err = capsys.readouterr().err
    assert "normal_020x" in err and "records no whole patch_size_level0" in err
    assert not (mixed / "out").exists()


def test_patch_level_without_patch_size_is_refused(mixed):
    with pytest.raises(LabelInputError, match="--patch_level needs --patch_size"):
        L.label_folder(
            mixed / "labels.csv", mixed / "patches", mixed / "out", mixed / "masks",
            patch_level=1, progress=False,
        )  # fmt: skip


# --------------------------------------------------------------------------------------------
# helpers.formats: the readers give back what the writers wrote, in TRIDENT's order


def test_patch_labels_and_coords_round_trip(tmp_path):
    from helpers import formats

    labels = np.array([0, 1, 1, 0])
    formats.write_patch_labels(tmp_path / "a.h5", labels, np.array([0.0, 0.6, 1.0, 0.2]))
    got = formats.read_patch_labels(tmp_path / "a.h5")
    assert got.dtype == np.int64 and got.tolist() == [0, 1, 1, 0]
    coords_level0 = write_coords(tmp_path / "a_patches.h5")
    attrs, read_back = formats.read_coords(tmp_path / "a_patches.h5", P)  # TRIDENT's order
    assert attrs["patch_size_level0"] == P and np.array_equal(read_back, coords_level0)
    with pytest.raises(LabelInputError, match="no dataset 'patch_labels'"):
        formats.read_patch_labels(tmp_path / "a_patches.h5")
    with pytest.raises(FileNotFoundError, match="patch labels file not found"):
        formats.read_patch_labels(tmp_path / "missing.h5")
