"""What the demo wrote: ``cohort.json`` as a typed :class:`Manifest`, each file's size and
content hash (:func:`file_record`), and the checks of a cohort's files against it."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypedDict
from xml.etree import ElementTree

import pandas as pd
import tifffile

from helpers.demo.plan import COHORT_VERSION, CohortPaths, SlideSpec, plan_cohort
from helpers.fileio import atomic_path
from helpers.layout import DEMO_ENCODER

FORMAT = 3  # the manifest: files with sizes and content hashes, beside a marker
MANIFEST = "cohort.json"  # every file written, with size and sha256


class FileRecord(TypedDict):
    """One file of the manifest: its size, SHA-256 and modification time."""

    size: int
    sha256: str
    mtime_ns: int


def file_record(path: Path) -> FileRecord:
    """``{"size", "sha256", "mtime_ns"}`` of a file, as the manifest stores it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    st = path.stat()
    return {"size": st.st_size, "sha256": digest.hexdigest(), "mtime_ns": st.st_mtime_ns}


def check_file(path: Path) -> str | None:
    """A cheap open-and-check of a cohort file: ``None`` when it reads, else what is wrong.

    TIFF: every page's tiles lie inside the file (a truncated pyramid fails); h5: every
    dataset reads; XML: parses; JPEG: starts and ends with its markers; CSV: has rows.
    """
    import h5py

    from helpers.formats.h5 import h5_dataset

    try:
        size = path.stat().st_size
        if path.suffix == ".tif":
            with tifffile.TiffFile(path) as tif:
                if not tif.pages:
                    return "no image in the TIFF"
                for page in tif.pages:
                    ends = [
                        o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)
                    ]
                    if not ends or max(ends) > size or 0 in page.databytecounts:
                        return "the TIFF is truncated"
        elif path.suffix == ".h5":
            with h5py.File(path, "r") as f:
                for key in f.keys():
                    h5_dataset(f, key)[()]
        elif path.suffix == ".xml":
            ElementTree.parse(path)
        elif path.suffix == ".jpg":
            data = path.read_bytes()
            if data[:2] != b"\xff\xd8" or data.rstrip(b"\0")[-2:] != b"\xff\xd9":
                return "the JPEG is truncated"
        elif path.suffix == ".csv" and pd.read_csv(path).empty:
            return "the CSV has no rows"
    except Exception as exc:  # noqa: BLE001 - any failure to read is "damaged"
        return f"cannot be read ({type(exc).__name__}: {exc})"
    return None


def load_json(path: Path) -> dict | None:
    """The JSON object in ``path``; ``None`` when it is missing, unreadable or not an object."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def save_json(path: Path, info: Mapping[str, Any]) -> None:
    """Write ``info`` to ``path`` as JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(info, indent=1))


def same_plan(info: Mapping[str, Any] | None, seed: int, sizes: tuple) -> bool:
    """Whether ``info`` (a manifest's, marker's or packed arrays' plan) is this version's
    cohort for ``seed`` and ``sizes``."""
    return (
        info is not None
        and info.get("seed") == seed
        and info.get("sizes") == [list(x) for x in sizes]
        and info.get("version") == COHORT_VERSION
    )


@dataclass
class Manifest:
    """``cohort.json``: the plan (seed, version, sizes), the slides, and every file written
    (``files``: relative path -> :class:`FileRecord`); ``complete`` once every file is made
    but the ``pending`` slides, whose pixels a fast start paints when first asked for."""

    seed: int
    version: int
    sizes: list[list[int]]
    format: int = FORMAT
    encoder: str = DEMO_ENCODER
    complete: bool = False
    slides: list[dict] = field(default_factory=list)
    files: dict[str, FileRecord] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)

    @classmethod
    def new(cls, seed: int, sizes: tuple, specs: list[SlideSpec]) -> Manifest:
        """An empty manifest for the plan ``seed``, ``sizes`` of this version."""
        plan = [list(x) for x in sizes]
        return cls(seed, COHORT_VERSION, plan, slides=[asdict(s) for s in specs])

    @classmethod
    def read(cls, root: Path) -> Manifest | None:
        """The manifest of the cohort at ``root``; ``None`` when it is missing or damaged."""
        info = load_json(root / MANIFEST)
        if info is None:
            return None
        try:
            m = cls(int(info["seed"]), int(info["version"]), [list(p) for p in info["sizes"]])
        except (KeyError, TypeError, ValueError):
            return None
        for key in ("format", "encoder", "complete", "slides", "files", "pending"):
            if key in info:
                setattr(m, key, info[key])
        if not isinstance(m.files, dict) or not isinstance(m.pending, list):
            return None
        return m

    def save(self, root: Path) -> None:
        """Write it to ``root / cohort.json`` (atomically)."""
        save_json(root / MANIFEST, asdict(self))

    @property
    def plan(self) -> dict[str, Any]:
        """``{"seed", "version", "sizes"}``."""
        return {"seed": self.seed, "version": self.version, "sizes": self.sizes}

    def specs(self) -> list[SlideSpec]:
        """The slides of its plan (:func:`helpers.demo.plan.plan_cohort`)."""
        return plan_cohort(self.seed, tuple(map(tuple, self.sizes)))


def verify_files(
    root: Path, records: Mapping[str, FileRecord], full: bool = False
) -> dict[str, str]:
    """Files of ``records`` that are missing or changed: ``{relative path: what is wrong}``.

    Fast path: size and modification time equal to the record. A file whose time differs is
    hashed (``full=True``: every file is) and passes when its content hash is the record's
    (then the record takes the new time).
    """
    damaged = {}
    for rel, rec in records.items():
        path = root / rel
        try:
            st = path.stat()
        except OSError:
            damaged[rel] = "missing"
            continue
        if st.st_size != rec["size"]:
            damaged[rel] = f"{st.st_size} bytes instead of {rec['size']}"
        elif full or st.st_mtime_ns != rec["mtime_ns"]:
            now = file_record(path)
            if now["sha256"] != rec["sha256"]:
                damaged[rel] = "content changed (sha256 differs from the manifest)"
            else:
                rec["mtime_ns"] = now["mtime_ns"]
    return damaged


def writable(root: Path) -> bool:
    """Whether ``root`` (or, when it does not exist yet, its nearest parent) is writable."""
    probe = root
    while not probe.exists():
        probe = probe.parent
    return os.access(probe, os.W_OK | os.X_OK)


def complete_and_valid(m: Manifest | None, root: Path, seed: int, sizes: tuple, lazy: bool) -> bool:
    """Whether ``m`` is the manifest of this complete cohort at ``root`` with every file
    intact (with ``lazy``, slides still to be painted on demand count as complete)."""
    if m is None or not same_plan(m.plan, seed, sizes) or not m.complete:
        return False
    if m.pending and not lazy:
        return False
    specs = plan_cohort(seed, sizes)
    paths = CohortPaths(root)
    later = set()
    for s in specs:
        if s.name in m.pending:
            files = paths.slide_files(s) + [paths.thumbnail_path(s.name)]
            later |= {p.relative_to(root).as_posix() for p in files}
    if set(paths.expected_files(specs)) - set(m.files) - later:
        return False
    before = json.dumps(m.files, sort_keys=True)
    if verify_files(root, m.files):
        return False
    if json.dumps(m.files, sort_keys=True) != before and writable(root):
        try:  # remember the new modification times so the next check is fast again
            m.save(root)
        except OSError:
            pass
    return True
