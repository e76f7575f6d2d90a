"""Nothing lost, round 2 (issue 18): hostile but realistic input. Each test reproduces one case
of the issue (its number in the name): data never lost, no silent wrong result, a clear error
naming the file and what to do instead of a traceback or a crash.

Small synthetic folders only: a TRIDENT-shaped job of a few bags for the data cases, a
512 x 512 px slide with 64-px patches for the labels cases.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import sys
import types
import warnings
from collections import namedtuple
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from helpers import data, demo, fileio, settings, training
from helpers import labels as L
from helpers.data import load_dataset, load_splits, patch_labels_hint
from helpers.evaluation import Predictions, patch_auroc, predict
from helpers.formats import LabelInputError, write_patch_labels
from helpers.froc import froc_from_predictions
from helpers.models import ABMIL
from helpers.scores import minmax
from helpers.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DIM = 6
PSL0 = 1024  # patch_size_level0 of the data cases


# ------------------------------------------------------------------------------ data cases
def write_bag(cfg: Settings, name: str, n: int = 12, seed: int = 0, **coords_attrs) -> None:
    """Coords (a grid of ``PSL0`` cells, 4 wide) and features of one slide, as TRIDENT."""
    cells = np.array([(i % 4, i // 4) for i in range(n)])
    step = coords_attrs.pop("step", PSL0)
    coords = (cells * step).astype(np.int64)
    attrs = {"patch_size": 512, "patch_size_level0": float(PSL0), "overlap": 0} | coords_attrs
    cfg.coords_dir.mkdir(parents=True, exist_ok=True)
    cfg.features_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(cfg.coords_path(name), "w") as f:
        f.create_dataset("coords", data=coords).attrs.update(attrs)
    rng = np.random.default_rng(seed)
    with h5py.File(cfg.features_path(name), "w") as f:
        f.create_dataset("features", data=rng.normal(size=(n, DIM)).astype(np.float32))
        f.create_dataset("coords", data=coords)


def job(root: Path, train: str, test: str = "wsi_name,wsi_label\nt_0,0\nt_1,1\n") -> Settings:
    """A job whose slides are those the two CSV texts list (names as the features files)."""
    cfg = Settings(
        "camelyon16", root / "wsis", None, None, root / "job", "enc", root / "train.csv",
        root / "test.csv",
    )  # fmt: skip
    root.mkdir(parents=True, exist_ok=True)
    cfg.train_csv.write_text(train)
    cfg.test_csv.write_text(test)
    for k, name in enumerate(
        [*data.read_split(cfg.train_csv)["wsi_name"], *data.read_split(cfg.test_csv)["wsi_name"]]
    ):
        write_bag(cfg, name, seed=k)
    return cfg


TRAIN = "wsi_name,wsi_label\na_0,0\na_1,0\na_2,1\na_3,1\na_4,0\na_5,1\n"


def test_03_a_slide_in_both_csvs_is_refused(tmp_path):
    cfg = job(tmp_path, TRAIN, "wsi_name,wsi_label\nt_0,0\na_2,1\n")
    with pytest.raises(ValueError, match=r"both .*train.csv.*test.csv.*a_2.*remove"):
        load_splits(cfg, val_frac=0.34)


@pytest.mark.parametrize(
    "attrs, why",
    [
        ({"overlap": 256, "step": PSL0 - 256}, "--overlap 0"),  # TRIDENT --overlap 256
        ({"step": PSL0 // 2}, "spaced by 512"),  # patch_size_level0 twice the spacing
    ],
)
def test_04_an_overlapping_grid_is_refused_at_load_time(tmp_path, attrs, why):
    cfg = job(tmp_path, TRAIN)
    write_bag(cfg, "a_3", **attrs)
    with pytest.raises(ValueError, match=why) as err:
        load_dataset(cfg, cfg.train_csv)
    assert str(cfg.coords_path("a_3")) in str(err.value)


@pytest.mark.parametrize(
    "csv, names",
    [
        ("wsi_name,wsi_label\n12345,0\n00777,1\n", ["00777", "12345"]),  # names of digits
        ("wsi_name,wsi_label\nTCGA-A1-DX1.2C0E04A1,1\nb.x,0\n", ["TCGA-A1-DX1.2C0E04A1", "b.x"]),
        ("wsi_name,wsi_label\n  s_1 ,1\ns_2  ,0\n", ["s_1", "s_2"]),  # spaces around
        ("wsi_name, wsi_label\ns_1,1\ns_2,0\n", ["s_1", "s_2"]),  # a space in the header
    ],
)
def test_11_torchmil_gets_our_reading_of_the_csv(tmp_path, csv, names):
    cfg = job(tmp_path, csv)
    dataset = load_dataset(cfg, cfg.train_csv)
    assert dataset.get_bag_names() == names
    expected = data.read_split(cfg.train_csv).set_index("wsi_name")["wsi_label"]
    got = {n: int(dataset[i]["Y"].reshape(-1)[0]) for i, n in enumerate(names)}
    assert got == expected.to_dict()


def test_17_a_slide_extension_in_the_csv_is_dropped(tmp_path):
    cfg = job(tmp_path, "wsi_name,wsi_label\nnormal_001,0\ntumor_001,1\n")
    cfg.train_csv.write_text("wsi_name,wsi_label\nnormal_001.tif,0\ntumor_001.TIF,1\n")
    dataset = load_dataset(cfg, cfg.train_csv)
    assert dataset.get_bag_names() == ["normal_001", "tumor_001"]
    assert [int(dataset[i]["Y"][0]) for i in range(2)] == [0, 1]


@pytest.mark.parametrize("damage", ["empty", "truncated", "text"])
def test_12_a_damaged_features_file_is_named(tmp_path, damage):
    cfg = job(tmp_path, TRAIN)
    path = cfg.features_path("a_1")
    whole = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": whole[: len(whole) // 2], "text": b"oops"}[damage])
    with pytest.raises(ValueError, match="extract this slide's features again") as err:
        load_dataset(cfg, cfg.train_csv)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    "attrs",
    [
        {"patch_size_level0": float("nan")},
        {"patch_size_level0": 0.0},
        {"level0_width": float("nan"), "level0_height": 4096},
    ],
)
def test_13_nan_or_zero_patch_size_names_the_coords_file(tmp_path, attrs, capsys):
    cfg = job(tmp_path, TRAIN)
    write_bag(cfg, "a_2", **attrs)
    with pytest.raises(ValueError, match="not a whole number > 0") as err:
        load_dataset(cfg, cfg.train_csv)
    assert str(cfg.coords_path("a_2")) in str(err.value)
    # the same file given to helpers.labels (every slide normal: no mask needed)
    csv = tmp_path / "normal.csv"
    csv.write_text("wsi_name,wsi_label\na_0,0\na_2,0\n")
    argv = ["--csv_path", str(csv), "--coords_dir", str(cfg.coords_dir)]
    assert L.main([*argv, "--save_dir", str(tmp_path / "labels"), "--no_progress"]) == 2
    assert "a_2_patches.h5: the attribute" in capsys.readouterr().err
    assert not (tmp_path / "labels").exists()


def test_16_the_labels_command_survives_a_space_in_a_path(tmp_path):
    root = tmp_path / "my data"
    cfg = Settings(
        "camelyon16", root / "wsis", root / "tumour masks", None, root / "job", "enc",
        root / "train labels.csv", root / "test.csv",
    )  # fmt: skip
    hint = patch_labels_hint(cfg).replace("\\\n", "")  # as a shell joins the lines
    train_command = next(line for line in hint.splitlines() if "--csv_path" in line)
    argv = shlex.split(train_command)
    assert argv[:3] == ["python", "-m", "helpers.labels"]
    args = L.build_parser().parse_args(argv[3:])
    assert Path(args.csv_path) == cfg.train_csv and Path(args.masks_dir) == cfg.mask_dir
    assert Path(args.save_dir) == cfg.patch_labels_dir and Path(args.wsi_dir) == cfg.wsi_dir
    assert args.annotations_dir is None and args.patch_size is None  # each file's own size
    assert train_command.strip() == data.labels_commands(cfg)[0].replace("\\\n", "")


def test_20_the_no_labels_note_is_shown_once_per_chapter(tmp_path):
    cfg = job(tmp_path, TRAIN)
    first = patch_labels_hint(cfg)
    assert "python -m helpers.labels" in first
    again = patch_labels_hint(cfg)
    assert "python -m helpers.labels" not in again and "see the note above" in again
    assert str(cfg.patch_labels_dir) in again
    # the next chapter (a new setup(), a new cfg) shows the whole note again
    assert patch_labels_hint(job(tmp_path / "next", TRAIN)).count("python -m helpers.labels") == 2
    # an error that needs patch labels always says how to make them
    with pytest.raises(FileNotFoundError, match="python -m helpers.labels"):
        load_dataset(cfg, cfg.train_csv, patch_labels=True)


def test_20_chapter_1_shows_the_notes_command():
    text = (REPO / "book" / "01-wsi-preparation.md").read_text()
    assert "for command in labels_commands(cfg)" in text
    assert (
        "--patch_level" not in text.split("for command in labels_commands(cfg)")[1].split("```")[0]
    )


class _Kernel:
    """What ``IPython.get_ipython()`` returns in a Jupyter kernel, as far as tqdm looks."""

    config = {"IPKernelApp": {}}


def test_19_loading_bags_in_a_notebook_writes_nothing_to_stderr(tmp_path, monkeypatch, capsys):
    cfg = job(tmp_path, TRAIN)
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = _Kernel
    monkeypatch.setitem(sys.modules, "IPython", ipython)  # in Jupyter ...
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # ... without ipywidgets
    load_dataset(cfg, cfg.train_csv)
    assert capsys.readouterr().err == ""  # no red block
    monkeypatch.delitem(sys.modules, "IPython")  # a terminal: a bar on stderr
    load_dataset(cfg, cfg.train_csv)
    assert "Loading bags" in capsys.readouterr().err


def test_18_a_mask_or_annotations_folder_that_is_not_there_is_named(tmp_path, monkeypatch):
    cfg = job(tmp_path, TRAIN)
    cfg.wsi_dir.mkdir()
    env = {
        "MIL_BOOK_DATA": "camelyon16",
        "MIL_BOOK_WSI_DIR": str(cfg.wsi_dir),
        "MIL_BOOK_JOB_DIR": str(cfg.job_dir),
        "MIL_BOOK_ENCODER": cfg.encoder,
        "MIL_BOOK_TRAIN_CSV": str(cfg.train_csv),
        "MIL_BOOK_TEST_CSV": str(cfg.test_csv),
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert settings.setup(verbose=False).mask_dir is None  # unset: fine
    monkeypatch.setenv("MIL_BOOK_MASK_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="MIL_BOOK_MASK_DIR=.*nowhere does not exist"):
        settings.setup(verbose=False)
    monkeypatch.delenv("MIL_BOOK_MASK_DIR")
    monkeypatch.setenv("MIL_BOOK_ANNOTATIONS_DIR", str(cfg.train_csv))
    with pytest.raises(FileNotFoundError, match="MIL_BOOK_ANNOTATIONS_DIR=.*is a file"):
        settings.setup(verbose=False)


# ------------------------------------------------------------------------------ scores
def test_07_a_nan_instance_score_is_an_error_not_a_blank_bag(tmp_path):
    with pytest.raises(ValueError, match="NaN or infinite"):
        minmax([0.2, float("nan"), 0.9])
    assert minmax([3.0, 3.0]).tolist() == [0.0, 0.0]  # constant: still zeros
    scores = [np.array([0.1, np.nan, 2.0, 0.5]), np.array([0.3, 0.2])]
    preds = Predictions(
        ["tumour_a", "normal_b"], np.array([1, 0]), np.array([0.9, 0.1]), scores, scores,
        [np.array([0, 1, 1, 0]), np.array([0, 0])], [np.array([[0, 0], [1, 0], [2, 0], [3, 0]]),
        np.array([[0, 0], [1, 0]])],
    )  # fmt: skip
    with pytest.raises(ValueError, match="tumour_a"):
        patch_auroc(preds)
    with pytest.raises(ValueError, match="NaN"):
        froc_from_predictions(preds)
    # a model that gives NaN for one patch: predict names the slide
    cfg = job(tmp_path, TRAIN)
    dataset = load_dataset(cfg, cfg.train_csv)
    model = ABMIL(DIM, att_dim=4, hidden_dim=3)
    real = model.forward

    def one_nan(X, mask=None, return_att=False):  # noqa: N803 - torchmil's name
        logits, att = real(X, mask, return_att=True)
        att = att.clone()
        att[..., 1] = float("nan")
        return (logits, att) if return_att else logits

    model.forward = one_nan
    with pytest.raises(ValueError, match="slide a_0"):
        predict(model, dataset)


# ------------------------------------------------------------------------------ weights cache
FIT = training.fit  # the loop train_or_load trains with


class Bags(torch.utils.data.Dataset):
    """Four small bags of 4 features."""

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.names = ["a", "b", "c", "d"]
        self.bags = [
            {"X": torch.randn(3 + i, 4, generator=g), "Y": torch.tensor([float(i % 2)])}
            for i in range(4)
        ]

    def get_bag_names(self) -> list[str]:
        return self.names

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int):
        from tensordict import TensorDict

        return TensorDict(self.bags[i], batch_size=[])


def cached_training(folder: Path, monkeypatch, calls: list):
    monkeypatch.setenv("MIL_BOOK_MODELS_DIR", str(folder))
    cfg = Settings("demo", folder, None, None, folder, "x", folder, folder)

    def counting(*args, **kwargs):
        calls.append(1)
        return FIT(*args, **kwargs)

    monkeypatch.setattr(training, "fit", counting)
    return training.train_or_load(
        cfg, "t", lambda: ABMIL(4, att_dim=4, hidden_dim=3),
        data.make_loader(Bags(), shuffle=True), data.make_loader(Bags(9)), device="cpu",
        epochs=1,
    )  # fmt: skip


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_14_a_damaged_cache_entry_is_named_and_trained_again(tmp_path, monkeypatch, damage):
    calls: list = []
    first, _ = cached_training(tmp_path, monkeypatch, calls)
    (path,) = tmp_path.glob("t-*.pt")
    whole = path.read_bytes()
    damaged = {"empty": b"", "truncated": whole[: len(whole) // 2], "garbage": b"\x80junk" * 9}
    path.write_bytes(damaged[damage])
    with pytest.warns(UserWarning, match=f"{path.name} are damaged"):
        model, _ = cached_training(tmp_path, monkeypatch, calls)
    assert calls == [1, 1]  # trained again
    for a, b in zip(first.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)  # the same seed: the same model
    assert torch.load(path, weights_only=False)["state_dict"]  # replaced by a good entry
    cached_training(tmp_path, monkeypatch, calls)
    assert calls == [1, 1]  # and loaded from it next time


def test_15_an_unusable_models_folder_warns_before_training_and_keeps_the_model(
    tmp_path, monkeypatch
):
    calls: list = []
    folder = tmp_path / "models-file"
    folder.write_text("not a folder")
    with pytest.warns(UserWarning, match="is a file, not a folder") as record:
        model, history = cached_training(folder, monkeypatch, calls)
    assert calls == [1] and len(history) == 1 and isinstance(model, ABMIL)
    assert folder.read_text() == "not a folder"
    assert len(record) == 1  # before training, and nothing else
    # a folder the check passes but the save fails in (read-only, full): warn, keep the model
    monkeypatch.setattr(
        training.torch, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(30, "Read-only"))
    )
    with pytest.warns(UserWarning, match="kept in memory"):
        model, _ = cached_training(tmp_path / "models", monkeypatch, calls)
    assert calls == [1, 1] and isinstance(model, ABMIL)
    assert not list((tmp_path / "models").glob("*"))  # no half-written entry


# ------------------------------------------------------------------------------ labels cases
P, SIZE = 64, 512


def write_tiff(path: Path, image: np.ndarray) -> Path:
    rgb = image.ndim == 3
    levels = demo.pyramid_levels(image, 2, cv2.INTER_NEAREST)
    photometric = "rgb" if rgb else "minisblack"
    demo.write_pyramid(path, levels, None, photometric=photometric, compression="zlib")
    return path


def write_coords(path: Path) -> None:
    xs, ys = np.meshgrid(np.arange(0, SIZE, P), np.arange(0, SIZE, P))
    coords = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)
    attrs = {"patch_size": P, "patch_size_level0": P, "overlap": 0}
    attrs |= {"level0_width": SIZE, "level0_height": SIZE}
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("coords", data=coords).attrs.update(attrs)


@pytest.fixture
def folder(tmp_path):
    """normal_001 and tumor_001: coords, a book-style mask of tumor_001 (2 = tumour)."""
    for name in ("normal_001", "tumor_001"):
        write_coords(tmp_path / "patches" / f"{name}_patches.h5")
    mask = np.ones((SIZE, SIZE), np.uint8)
    mask[128:320, 128:320] = 2
    (tmp_path / "masks").mkdir()
    write_tiff(tmp_path / "masks" / "tumor_001_mask.tif", mask)
    (tmp_path / "labels.csv").write_text("wsi_name,wsi_label\nnormal_001,0\ntumor_001,1\n")
    return tmp_path


def argv(folder: Path, save_dir: Path, *extra: str) -> list[str]:
    return [
        "--csv_path", str(folder / "labels.csv"), "--coords_dir", str(folder / "patches"),
        "--save_dir", str(save_dir), "--masks_dir", str(folder / "masks"), "--no_progress",
        *extra,
    ]  # fmt: skip


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_01_a_features_folder_as_save_dir_is_never_overwritten(folder, capsys):
    features = folder / "features_uni_v1"
    features.mkdir()
    for name in ("normal_001", "tumor_001"):
        with h5py.File(features / f"{name}.h5", "w") as f:
            f.create_dataset("features", data=np.ones((64, 8), np.float32))
            f.create_dataset("coords", data=np.zeros((64, 2), np.int64))
    before = snapshot(features)
    assert L.main(argv(folder, features)) == 2
    err = capsys.readouterr().err
    assert "not patch labels" in err and "normal_001.h5" in err and "nothing was written" in err
    assert snapshot(features) == before
    # our own patch-label files are replaced as before
    out = folder / "patch_labels"
    assert L.main(argv(folder, out)) == 0
    assert L.main(argv(folder, out, "--threshold", "0.9")) == 0
    with h5py.File(out / "tumor_001.h5") as f:
        assert f["patch_labels"].attrs["threshold"] == 0.9


def test_09_a_full_disk_is_a_clear_error_before_anything_is_written(folder, monkeypatch, capsys):
    out = folder / "out"
    out.mkdir()
    (out / "normal_001.h5").write_bytes(b"")
    write_patch_labels(out / "normal_001.h5", np.zeros(64, np.int64))
    before = snapshot(out)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9, 300_000))
    assert L.main(argv(folder, out)) == 2
    err = capsys.readouterr().err
    assert "not enough free space" in err and "nothing was written" in err
    assert snapshot(out) == before


def test_09_a_write_that_fails_half_way_leaves_nothing(folder, monkeypatch):
    out = folder / "out"
    write_patch_labels(out / "normal_001.h5", np.zeros(64, np.int64))
    before = snapshot(out)
    real, written = os.write, []

    def full_after_a_while(fd, view):
        if sum(written) > 3000:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(real(fd, view[:1000]))  # a disk filling up: short writes, then none
        return written[-1]

    monkeypatch.setattr(fileio.os, "write", full_after_a_while)
    with pytest.raises(LabelInputError, match="No space left on device.*nothing was written"):
        L.label_folder(folder / "labels.csv", folder / "patches", out, folder / "masks",
                       progress=False)  # fmt: skip
    assert snapshot(out) == before  # no .partial file, the older labels untouched
    # the h5 files of TRIDENT and of the demo go through the same writer
    with pytest.raises(OSError, match="No space left"):
        write_patch_labels(out / "tumor_001.h5", np.zeros(64, np.int64))
    written.clear()
    with pytest.raises(OSError, match="No space left"):
        from helpers.formats import save_coords

        save_coords(out / "x_patches.h5", np.zeros((500, 2)), {"patch_size_level0": 512.0})
    assert snapshot(out) == before


def test_09_the_demo_fast_start_on_a_full_disk_is_a_clear_error(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**7, 10**7, 50_000))
    root = tmp_path / "demo"
    with pytest.raises(OSError, match="not enough free space.*free some space"):
        demo.make_cohort(root, lazy=True, quiet=True)
    assert not demo.safety.partial_files(root)
    assert not [p for p in root.rglob("*.h5")]  # no h5 file, whole or half


def test_05_annotation_coordinates_that_are_not_usable_are_named(folder, capsys):
    (folder / "masks" / "tumor_001_mask.tif").unlink()
    (folder / "annotations").mkdir()
    xml = folder / "annotations" / "tumor_001.xml"
    for bad in ("1e10", "-1e10", "nan", "inf"):
        xml.write_text(
            '<ASAP_Annotations><Annotations><Annotation Name="a" PartOfGroup="Tumor">'
            "<Coordinates>"
            f'<Coordinate Order="0" X="128" Y="128"/><Coordinate Order="1" X="{bad}" Y="128"/>'
            '<Coordinate Order="2" X="320" Y="320"/><Coordinate Order="3" X="128" Y="320"/>'
            "</Coordinates></Annotation></Annotations></ASAP_Annotations>"
        )
        cmd = argv(folder, folder / "out", "--annotations_dir", str(folder / "annotations"))
        assert L.main(cmd) == 2, bad
        err = capsys.readouterr().err
        assert "tumor_001.xml" in err and ("not finite" in err or "far beyond" in err), err
        assert not (folder / "out").exists()


@pytest.mark.parametrize(
    "background, tumour",
    [((0, 0, 0), (0, 0, 255)), ((255, 255, 255), (0, 200, 0))],  # blue on black, green on white
)
def test_06_a_colour_mask_names_its_colours(folder, capsys, background, tumour):
    rgb = np.zeros((SIZE, SIZE, 3), np.uint8) + np.uint8(background)
    rgb[128:320, 128:320] = tumour
    write_tiff(folder / "masks" / "tumor_001_mask.tif", rgb)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mask is all 0" warning either
        assert L.main(argv(folder, folder / "out")) == 2
    err = capsys.readouterr().err
    assert "colour image" in err and str(tumour) in err and str(background) in err
    assert not (folder / "out").exists()


# ------------------------------------------------------------------------------ the demo
SIZES = ((0, 1), (1, 0))


def fake_cohort(root: Path, files: list[str]) -> None:
    """A folder that is a demo cohort by its marker and manifest, listing ``files``."""
    plan = {"seed": 5, "version": demo.COHORT_VERSION, "sizes": [list(x) for x in SIZES]}
    root.mkdir(parents=True)
    (root / demo.MARKER).write_text(json.dumps({"made_by": "helpers.demo", **plan}))
    listed = {rel: {"size": 1, "sha256": "0", "mtime_ns": 0} for rel in files}
    manifest = {**plan, "format": demo.FORMAT, "complete": True, "files": listed}
    (root / demo.MANIFEST).write_text(json.dumps(manifest))


class _Stop(Exception):
    pass


def test_02_force_deletes_only_files_the_build_writes(tmp_path, monkeypatch):
    victim, elsewhere = tmp_path / "victim.txt", tmp_path / "outside" / "keep.tif"
    elsewhere.parent.mkdir()
    victim.write_text("a reader's file")
    elsewhere.write_text("another")
    root = tmp_path / "demo"
    ours = ["wsis/tumor_001.tif", "train.csv"]
    mine = "wsis/my_own_slide.tif"
    fake_cohort(root, [*ours, "../victim.txt", str(elsewhere), mine, "wsis/../../victim.txt"])
    for rel in [*ours, mine]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(demo.build, "build_slides", stop)
    with pytest.warns(UserWarning, match="never writes there"), pytest.raises(_Stop):
        demo.make_cohort(root, seed=5, sizes=SIZES, force=True, quiet=True)
    assert victim.read_text() == "a reader's file" and elsewhere.read_text() == "another"
    assert (root / mine).read_text() == "x"
    assert not any((root / rel).exists() for rel in ours)


def test_10_a_full_disk_during_the_demo_build_is_one_clear_message(tmp_path, monkeypatch, capsys):
    def fill_the_disk(todo, root, *args):
        with fileio.atomic_path(Path(root) / "wsis" / "x.tif") as tmp:
            tmp.write_bytes(b"half a slide")
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    monkeypatch.setattr(demo.build, "build_slides", fill_the_disk)
    out = tmp_path / "demo"
    assert demo.main(["--out", str(out), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Nothing half-written is left" in err
    assert "run the same command again" in err and "Traceback" not in err
    assert not demo.safety.partial_files(out) and not (out / "wsis" / "x.tif").exists()
    # a worker process's full disk comes back as the same OSError
    answer = {"name": "tumor_001", "error": "...", "oserror": [28, "No space left", "/x"]}
    with pytest.raises(OSError) as err:
        demo.workers.raise_worker_error(answer)
    assert err.value.errno == errno.ENOSPC and err.value.filename == "/x"
