"""helpers.fileio: ``atomic_path`` leaves nothing behind on error and never half a file,
``file_lock`` keeps a second process out while the first holds the lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from helpers.fileio import atomic_path, file_lock


def test_atomic_path_moves_the_file_into_place_on_success(tmp_path):
    target = tmp_path / "sub" / "weights.pt"  # the folder is created
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".pt" and tmp != target
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing at the final name until the block ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["weights.pt"]


def test_atomic_path_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "labels.h5"
    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a file")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []  # no target, no temporary file of any name


def test_atomic_path_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "cohort.json"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target) as tmp:
            tmp.write_text("new, unfinished")
            raise KeyboardInterrupt
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cohort.json"]


def test_atomic_path_replaces_an_existing_file(tmp_path):
    target = tmp_path / "a.csv"
    target.write_text("old")
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_path_with_nothing_written_leaves_nothing(tmp_path):
    """A block that fails before writing must not fail again on the cleanup."""
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "x.npz"):
            raise ValueError("bad input")
    assert list(tmp_path.iterdir()) == []


HOLDER = textwrap.dedent(
    """
    import sys, time
    from helpers.fileio import file_lock
    lock, log = sys.argv[1], sys.argv[2]
    with file_lock(lock):
        print("locked", flush=True)
        time.sleep(1.0)
        with open(log, "a") as f:
            f.write("holder releases\\n")
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="file_lock is a no-op on Windows")
def test_file_lock_keeps_a_second_process_out(tmp_path):
    lock, log = tmp_path / "demo.lock", tmp_path / "log.txt"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock), str(log)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        start = time.perf_counter()
        with file_lock(lock):
            waited = time.perf_counter() - start
            with open(log, "a") as f:
                f.write("second takes the lock\n")
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0
    assert log.read_text().splitlines() == ["holder releases", "second takes the lock"]
    assert waited > 0.5  # it waited for the holder (which held the lock for 1 s)


def test_file_lock_can_be_taken_again_after_release(tmp_path):
    lock = tmp_path / "x.lock"
    with file_lock(lock):
        pass
    with file_lock(lock):  # would block forever if the first one were still held
        pass
    assert lock.exists()
