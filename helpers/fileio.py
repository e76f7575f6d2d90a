"""Small file utilities: atomic writes, so an interrupted run never leaves half a file, and
writes that check the free space first (a full disk gives a clear error, not a crash)."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

#: Left free on a disk after a write of ours: a disk filled to the last byte breaks other
#: programs (and h5py, which crashes on a full disk instead of raising).
RESERVE_BYTES = 1 << 20


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    The temporary file keeps the final suffix (so writers that look at it still work) and
    is removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) between processes (POSIX)."""
    try:
        import fcntl
    except ImportError:  # Windows: no lock, as before
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _existing_folder(path: Path) -> Path:
    """``path`` or its nearest existing parent."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _megabytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def require_free_space(folder: str | os.PathLike, nbytes: int, what: str = "this write") -> None:
    """Raise ``OSError`` (``ENOSPC``) unless ``folder``'s disk has ``nbytes`` plus
    :data:`RESERVE_BYTES` free; the message names the folder, the sizes and what to do.

    Arguments:
        folder: Where the bytes go (need not exist yet: its nearest parent is asked).
        nbytes: How many bytes will be written.
        what: What is written, for the message.
    """
    probe = _existing_folder(Path(folder))
    free = shutil.disk_usage(probe).free
    if free < nbytes + RESERVE_BYTES:
        raise OSError(
            errno.ENOSPC,
            f"not enough free space for {what} in {folder}: it needs {_megabytes(nbytes)} "
            f"(+ {_megabytes(RESERVE_BYTES)} kept free) and the disk has {_megabytes(free)} "
            "free; free some space or write to another disk",
        )


def write_bytes(path: str | os.PathLike, data: bytes, what: str | None = None) -> None:
    """Write ``data`` to ``path`` (not atomic: wrap in :func:`atomic_path` for that) after
    :func:`require_free_space`; a failed write (``ENOSPC``, ``EIO``, ...) removes the partial
    file and raises the ``OSError``.

    The bytes go through ``os.write``, so a full disk is an ``OSError`` like any other.
    """
    path = Path(path)
    require_free_space(path.parent, len(data), what or path.name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        path.unlink(missing_ok=True)
        raise
    try:
        os.close(fd)  # some file systems report a full disk only here
    except OSError:
        path.unlink(missing_ok=True)
        raise
