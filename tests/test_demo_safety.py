"""The demo cohort under bad input and interruption: it never touches a reader's files,
checks its own files on every start, repairs them, and stops cleanly (issue 9)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from helpers import demo
from helpers.settings import load_settings

# builds slides or cohorts of its own (minutes): left out of `make check`
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
# tumor_001 (train, macro) and test_001 (normal): two small sections (a normal training
# slide would be the cohort's first, large, section: 1,000+ patches, a minute to build)
SIZES = ((0, 1), (1, 0))
SEED = 5


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A two-slide cohort made by a script that calls the builder at top level, without an
    ``if __name__ == "__main__":`` guard, with two worker processes (it used to hang)."""
    root = tmp_path_factory.mktemp("base") / "demo"
    script = root.parent / "no_guard.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from helpers.demo import make_cohort
            make_cohort({str(root)!r}, seed={SEED}, sizes={SIZES!r}, workers=2, quiet=True)
            print("built")
            """
        )
    )
    res = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=_env(), timeout=900
    )
    return root, res


@pytest.fixture
def cohort(built, tmp_path):
    """A private copy of the small cohort, to damage at will."""
    root, res = built
    assert res.returncode == 0, res.stderr
    copy = tmp_path / "demo"
    shutil.copytree(root, copy)
    return copy


def _manifest(root: Path) -> dict:
    return json.loads((root / demo.MANIFEST).read_text())


def _mtimes(root: Path) -> dict[str, int]:
    return {
        p.relative_to(root).as_posix(): p.stat().st_mtime_ns
        for p in root.rglob("*")
        if p.is_file() and p.name not in (demo.MANIFEST, demo.MARKER)
    }


def _to_legacy(root: Path, complete: bool = True) -> None:
    """Make ``root`` look as helpers.demo before the marker left it."""
    m = _manifest(root)
    (root / demo.MARKER).unlink()
    (root / demo.MANIFEST).unlink()
    old = {k: m[k] for k in ("seed", "version", "sizes")}
    if complete:
        (root / demo.MANIFEST).write_text(json.dumps({**old, "encoder": m["encoder"]}))
    else:
        (root / demo.LEGACY_IN_PROGRESS).write_text(json.dumps(old))


class _Stop(Exception):
    pass


def _stop(*args, **kwargs):
    raise _Stop


def write_files(root: Path, files: dict[str, bytes]) -> None:
    """Write ``{relative path: bytes}`` under ``root``, making folders."""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)


def test_top_level_script_without_main_guard_does_not_hang(built):
    root, res = built
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "built"
    m = _manifest(root)
    assert m["complete"] is True and m["format"] == demo.FORMAT
    assert json.loads((root / demo.MARKER).read_text())["made_by"] == "helpers.demo"


def test_manifest_lists_every_file_with_size_and_hash(cohort):
    m = _manifest(cohort)
    specs = demo.plan_cohort(SEED, SIZES)
    assert set(m["files"]) == set(demo._expected_files(demo.CohortPaths(cohort), specs))
    for rel, rec in m["files"].items():
        assert rec == demo.file_record(cohort / rel) | {"mtime_ns": rec["mtime_ns"]}
        assert demo.check_file(cohort / rel) is None


def test_a_readers_folder_is_refused_and_left_alone(tmp_path):
    """A CAMELYON16 folder with the demo's names: no marker, so not ours, even with --force."""
    reader = tmp_path / "camelyon16"
    files = {
        "wsis/normal_001.tif": b"real slide",
        "masks/tumor_001_mask.tif": b"real mask",
        "annotations/tumor_001.xml": b"<xml/>",
        "trident_processed/20x_512px_0px_overlap/patches/normal_001_patches.h5": b"h5",
        "train.csv": b"wsi_name,wsi_label\nnormal_001,0\n",
    }
    write_files(reader, files)
    for extra in ([], ["--force"]):
        res = subprocess.run(
            [sys.executable, "-m", "helpers.demo", "--out", str(reader), *extra],
            capture_output=True,
            text=True,
            env=_env(),
            cwd=REPO,
            timeout=300,
        )
        assert res.returncode == 2, res.stderr
        assert "is not a demo cohort" in res.stderr and demo.MARKER in res.stderr
        for name in ("annotations/", "masks/", "train.csv", "trident_processed/", "wsis/"):
            assert name in res.stderr, "the message names what it found"
    assert {
        p.relative_to(reader).as_posix(): p.read_bytes() for p in reader.rglob("*") if p.is_file()
    } == files


def test_the_marker_is_written_first(tmp_path, monkeypatch):
    out = tmp_path / "new"
    saved = []
    real_save = demo._save_json
    monkeypatch.setattr(
        demo, "_save_json", lambda p, info: (saved.append(p.name), real_save(p, info))
    )

    def check_then_stop(todo, root, *args):
        assert sorted(os.listdir(root)) == sorted([demo.MARKER, demo.MANIFEST])
        raise _Stop

    monkeypatch.setattr(demo, "_build_slides", check_then_stop)
    with pytest.raises(_Stop):
        demo.make_cohort(out, seed=SEED, sizes=SIZES, quiet=True)
    assert saved[0] == demo.MARKER
    # the half-made folder is ours: the next run resumes it instead of refusing it
    assert demo._inspect(out).kind == "ours"


def test_force_removes_only_what_the_manifest_lists(cohort, monkeypatch):
    listed = list(_manifest(cohort)["files"])
    mine = {
        "wsis/my_own_slide.tif": b"reader",
        "notes.txt": b"reader",
        "models/notes.txt": b"reader",
    }
    write_files(cohort, mine)
    (cohort / "models" / "abmil-0123456789ab.pt").write_bytes(b"cached weights")
    (cohort / "models" / ".abmil-0123456789ab.partial-77.pt").write_bytes(b"half")
    monkeypatch.setattr(demo, "_build_slides", _stop)  # stop right after the clearing
    with pytest.raises(_Stop):
        demo.make_cohort(cohort, seed=SEED + 1, sizes=SIZES, force=True, quiet=True)
    assert not any((cohort / rel).exists() for rel in listed)
    assert {rel: (cohort / rel).read_bytes() for rel in mine} == mine
    assert sorted(p.name for p in (cohort / "models").iterdir()) == ["notes.txt"]
    assert (cohort / demo.MARKER).exists()


def test_another_seed_needs_force(cohort):
    with pytest.raises(demo.CohortError, match="--force"):
        demo.make_cohort(cohort, seed=SEED + 1, sizes=SIZES, quiet=True)


def test_a_complete_cohort_is_checked_without_hashing(cohort, monkeypatch):
    """The cached start compares sizes and times only (no file is read)."""

    def no_hash(path):
        raise AssertionError(f"hashed {path}")

    monkeypatch.setattr(demo, "file_record", no_hash)
    assert demo.make_cohort(cohort, seed=SEED, sizes=SIZES, quiet=True) == cohort


def test_changed_content_is_found(cohort):
    m = _manifest(cohort)
    rel = "trident_processed/20x_512px_0px_overlap/features_demo_stats/tumor_001.h5"
    path = cohort / rel
    data = bytearray(path.read_bytes())
    st = path.stat()
    data[-100] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(data))
    assert demo.verify_files(cohort, dict(m["files"])) == {
        rel: "content changed (sha256 differs from the manifest)"
    }
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old time restored
    assert demo.verify_files(cohort, dict(m["files"])) == {}
    assert rel in demo.verify_files(cohort, dict(m["files"]), full=True)
    # an untouched file whose time changed passes (and is hashed once)
    os.utime(cohort / "wsis" / "tumor_001.tif")
    files = json.loads(json.dumps(m["files"]))
    assert "wsis/tumor_001.tif" not in demo.verify_files(cohort, files)


def _features(path: Path) -> bytes:
    import h5py

    with h5py.File(path, "r") as f:
        return f["features"][:].tobytes() + f["coords"][:].tobytes()


def test_truncated_files_are_rebuilt_identical(cohort):
    wsi = cohort / "wsis" / "tumor_001.tif"
    feats = cohort / "trident_processed/20x_512px_0px_overlap/features_demo_stats/tumor_001.h5"
    slide, features = wsi.read_bytes(), _features(feats)
    untouched = _mtimes(cohort)["wsis/test_001.tif"]
    for p in (wsi, feats):
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    assert demo.check_file(wsi) == "the TIFF is truncated"
    assert demo.check_file(feats) is not None
    demo.make_cohort(cohort, seed=SEED, sizes=SIZES, workers=1, quiet=True)
    assert wsi.read_bytes() == slide
    assert _features(feats) == features  # (the h5 files also hold their folder's path)
    assert _mtimes(cohort)["wsis/test_001.tif"] == untouched, "only the damaged slide is rebuilt"
    assert _manifest(cohort)["complete"] is True


def test_damage_on_read_only_storage_is_named(cohort, monkeypatch):
    feats = cohort / "trident_processed/20x_512px_0px_overlap/features_demo_stats/test_001.h5"
    feats.write_bytes(feats.read_bytes()[:100])
    monkeypatch.setattr(demo, "_writable", lambda root: False)
    with pytest.raises(demo.CohortError, match="not writable") as err:
        demo.make_cohort(cohort, seed=SEED, sizes=SIZES, quiet=True)
    assert "features_demo_stats/test_001.h5" in str(err.value)


def test_a_complete_read_only_cohort_is_usable(cohort, monkeypatch):
    """A workshop server's shared, read-only data folder: nothing is written, setup() works,
    and trained weights go to ~/.cache."""
    from helpers import settings, training

    before = {p: p.stat().st_mtime_ns for p in cohort.rglob("*")}
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **k: False if mode & os.W_OK else real_access(p, mode)
    )

    def no_write(*args):
        raise AssertionError("wrote to a read-only cohort")

    monkeypatch.setattr(demo, "_save_json", no_write)
    monkeypatch.setattr(demo, "file_lock", no_write)
    monkeypatch.setenv("MIL_BOOK_DEMO_DIR", str(cohort))
    # setup() asks for the book's seed and sizes; this small cohort has its own
    monkeypatch.setattr(
        demo,
        "ensure_cohort",
        lambda out=None, seed=0, quiet=False, lazy=False: demo.make_cohort(
            out, SEED, sizes=SIZES, quiet=quiet, lazy=lazy
        ),
    )
    cfg = settings.setup(verbose=False)
    assert cfg.job_dir.parent == cohort
    assert {p: p.stat().st_mtime_ns for p in cohort.rglob("*")} == before
    assert training.cache_dir(cfg) == Path.home() / ".cache" / "mil-book" / "models"
    # an older helpers.demo's complete cohort on read-only storage is used too
    monkeypatch.undo()
    _to_legacy(cohort)
    monkeypatch.setattr(demo, "_writable", lambda root: False)
    monkeypatch.setattr(demo, "_save_json", no_write)
    assert demo.make_cohort(cohort, seed=SEED, sizes=SIZES, quiet=True) == cohort


def test_a_cohort_of_the_previous_version_is_upgraded_in_place(cohort):
    """The shared data/demo made before the marker: recognised by its cohort.json, checked,
    hashed into a manifest, not rebuilt."""
    before = _mtimes(cohort)
    _to_legacy(cohort)
    assert demo._inspect(cohort).kind == "legacy"
    demo.make_cohort(cohort, seed=SEED, sizes=SIZES, quiet=True)
    m = _manifest(cohort)
    assert m["complete"] is True and m["format"] == demo.FORMAT
    assert (cohort / demo.MARKER).exists()
    after = _mtimes(cohort)
    slides = {
        k: v for k, v in before.items() if not k.endswith((".csv",)) and "patch_labels" not in k
    }
    assert {k: after[k] for k in slides} == slides, "no slide was made again"


def test_an_interrupted_build_of_the_previous_version_is_finished(cohort):
    feats = cohort / "trident_processed/20x_512px_0px_overlap/features_demo_stats/test_001.h5"
    good = _features(feats)
    feats.write_bytes(feats.read_bytes()[:200])  # truncated by the old code? rebuilt, not adopted
    (cohort / "wsis" / ".x.partial-4242.tif").write_bytes(b"junk")
    keep = _mtimes(cohort)["wsis/tumor_001.tif"]
    _to_legacy(cohort, complete=False)
    demo.make_cohort(cohort, seed=SEED, sizes=SIZES, workers=1, quiet=True)
    assert _features(feats) == good
    assert _mtimes(cohort)["wsis/tumor_001.tif"] == keep
    assert not (cohort / demo.LEGACY_IN_PROGRESS).exists()
    assert not list(cohort.rglob("*.partial-*"))


def test_leftover_partial_files_are_cleaned(cohort):
    m = _manifest(cohort)
    m["complete"] = False  # as a killed build leaves it
    (cohort / demo.MANIFEST).write_text(json.dumps(m))
    junk = [
        cohort / "wsis" / ".tumor_001.partial-999.tif",
        cohort / "trident_processed/20x_512px_0px_overlap/patches/.test_001_patches.partial-9.h5",
    ]
    for p in junk:
        p.write_bytes(b"half")
    demo.make_cohort(cohort, seed=SEED, sizes=SIZES, quiet=True)
    assert not any(p.exists() for p in junk)
    assert _manifest(cohort)["complete"] is True


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


#: ten small test sections: still building when interrupted, whatever the machine
SMALL_BUILD = ((0, 0), (10, 0))
SMALL_NAMES = {f"test_{i:03d}" for i in range(1, 11)}


def _start_build(out: Path) -> tuple[subprocess.Popen, list[int]]:
    # Ctrl-C raises KeyboardInterrupt in the build, as in a Jupyter kernel, even when the
    # tests run in a background job (a shell starts those with SIGINT ignored, and Python
    # keeps a signal ignored that it inherits: the build would never see the interrupt)
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from helpers import demo; "
        f"demo.make_cohort({str(out)!r}, seed=1, sizes={SMALL_BUILD}, workers=2, quiet=True)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=_env(), stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    workers = _children(proc.pid)
    assert len(workers) == 2, "the build started two workers"
    time.sleep(3)  # let them paint
    return proc, workers


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the workers")
def test_ctrl_c_stops_the_build_quickly_and_leaves_a_resumable_state(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    proc, workers = _start_build(out)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)  # what Jupyter's "interrupt" sends (to the kernel only)
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - t0 < 10, "stopped within a few seconds"
    assert "Interrupted:" in err and "run the same command again" in err
    assert not any(_alive(w) for w in workers), "no worker left behind"
    assert not list(out.rglob("*.partial-*"))
    m = _manifest(out)
    assert m["complete"] is False and demo.verify_files(out, dict(m["files"])) == {}
    # the next run resumes it: it builds only what is missing
    seen = []
    monkeypatch.setattr(demo, "_build_slides", lambda todo, *a: (seen.append(todo), _stop()))
    with pytest.raises(_Stop):
        demo.make_cohort(out, seed=1, sizes=SMALL_BUILD, quiet=True)
    done = {rel.split("/")[1][:-4] for rel in m["files"] if rel.startswith("wsis/")}
    assert done < SMALL_NAMES, "stopped before the end"
    assert {s.name for s in seen[0]} == SMALL_NAMES - done


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc to find the workers")
def test_no_orphan_workers_after_the_main_process_is_killed(tmp_path):
    proc, workers = _start_build(tmp_path / "demo")
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(w) for w in workers), "the workers exit when their parent dies"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seed", "-1"], "--seed must be 0 or more"),
        (["--seed", "abc"], "--seed must be a whole number"),
        (["--workers", "-1"], "--workers must be a whole number >= 1"),
        (["--workers", "0"], "--workers must be a whole number >= 1"),
        (["--workers", "two"], "--workers must be a whole number >= 1"),
    ],
)
def test_cli_validates_seed_and_workers(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exc:
        demo.main(["--out", str(tmp_path / "x"), *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "kwargs", [{"seed": -1}, {"seed": "1"}, {"workers": 0}, {"workers": -1}, {"workers": True}]
)
def test_make_cohort_validates_its_arguments(kwargs, tmp_path):
    with pytest.raises(demo.CohortError, match="seed|workers"):
        demo.make_cohort(tmp_path / "x", quiet=True, **kwargs)
    assert not (tmp_path / "x").exists()


def test_the_cli_default_out_is_where_the_chapters_look(cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("MIL_BOOK_DEMO_DIR", str(cohort))
    assert demo.default_out() == load_settings().job_dir.parent == cohort
    monkeypatch.delenv("MIL_BOOK_DEMO_DIR")
    assert demo.default_out() == load_settings().job_dir.parent == REPO / "data" / "demo"
    # run from another folder, the CLI finds the cohort the chapters use
    code = f"from helpers import demo; demo.make_cohort(seed={SEED}, sizes={SIZES!r})"
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=_env(MIL_BOOK_DEMO_DIR=str(cohort)),
        cwd=tmp_path,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert f"already complete in {cohort}" in res.stdout
    res = subprocess.run(
        [sys.executable, "-m", "helpers.demo", "--help"],
        capture_output=True,
        text=True,
        env=_env(MIL_BOOK_DEMO_DIR=str(cohort)),
        cwd=tmp_path,
        timeout=300,
    )
    assert str(cohort) in res.stdout.replace("\n", "").replace(" ", "")


def test_a_marker_being_written_by_another_process_is_not_a_foreign_folder(tmp_path):
    """Two notebooks start at once: one is renaming its marker into place while the other
    looks (before taking the lock). The in-flight marker alone is not a reader's file; with
    anything else beside it the folder is still refused."""
    root = tmp_path / "shared"
    root.mkdir()
    (root / f".{Path(demo.MARKER).stem}.partial-123{Path(demo.MARKER).suffix}").write_text("{")
    assert demo._inspect(root).kind == "new"
    (root / "notes.txt").write_text("reader")
    with pytest.raises(demo.CohortError, match="not a demo cohort"):
        demo._inspect(root)
