"""The demo's folder safety: it writes only into a new or empty folder or one that carries
its marker, and deletes only files it writes, inside its folder."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from helpers.demo.manifest import MANIFEST, Manifest, load_json, save_json
from helpers.demo.plan import MANAGED, CohortError, CohortPaths

MARKER = ".mil-book-demo.json"  # written first: this folder is a demo cohort
MARKER_NOTE = (
    "This folder is a demo cohort of helpers.demo (python -m helpers.demo). It writes, "
    "replaces and deletes only the files cohort.json lists."
)


@dataclass
class Found:
    """What :func:`inspect_folder` found in ``--out``: ``"new"`` (absent or empty) or
    ``"ours"`` (a marker, with the manifest when it reads)."""

    kind: Literal["new", "ours"]
    marker: dict | None = None
    manifest: Manifest | None = None


def _is_partial_marker(path: Path) -> bool:
    """The temporary file :func:`save_json` writes the marker to before renaming it."""
    stem, suffix = Path(MARKER).stem, Path(MARKER).suffix
    return path.name.startswith(f".{stem}.partial-") and path.name.endswith(suffix)


def inspect_folder(root: Path) -> Found:
    """Recognise ``root`` without writing anything; raise :class:`CohortError` if it is
    neither absent, empty, nor a demo cohort (a folder with the marker)."""
    if root.exists() and not root.is_dir():
        raise CohortError(f"--out {root} is a file, not a folder.")
    if not root.exists():
        return Found("new")
    entries = sorted(root.iterdir())
    if all(_is_partial_marker(p) for p in entries):
        # empty, or another process is writing its marker right now (it holds the lock;
        # the caller waits for it and looks again)
        return Found("new")
    if (root / MARKER).exists():
        marker = load_json(root / MARKER)
        if marker is None or marker.get("made_by") != "helpers.demo":
            raise CohortError(
                f"{root / MARKER} is damaged; delete {root} by hand and build the cohort again."
            )
        return Found("ours", marker, Manifest.read(root))
    shown = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries[:8])
    more = f" and {len(entries) - 8} more" if len(entries) > 8 else ""
    raise CohortError(
        f"{root} is not empty and is not a demo cohort (it has no {MARKER}); found: "
        f"{shown}{more}. Nothing was changed: choose an empty or new folder for --out."
    )


def save_marker(root: Path, plan: dict[str, Any]) -> None:
    """Write the marker (the plan, and a note for a reader who finds the folder)."""
    save_json(root / MARKER, {"made_by": "helpers.demo", "note": MARKER_NOTE, **plan})


def other_seed_message(root: Path, info: dict[str, Any], seed: int) -> str:
    """Why a cohort of another plan is not rebuilt without ``--force``."""
    return (
        f"{root} holds a demo cohort made with seed {info.get('seed')} (version "
        f"{info.get('version')}, sizes {info.get('sizes')}); pass --force to rebuild it with "
        f"seed {seed}."
    )


def lock_path(root: Path) -> Path:
    """The lock file of builds in ``root``: beside it when its parent is writable."""
    if os.access(root.parent, os.W_OK):
        return root.parent / f".{root.name}.lock"
    return root / ".lock"  # pragma: no cover - a writable folder in a read-only one


def partial_files(root: Path) -> list[Path]:
    """Temporary files of :func:`helpers.fileio.atomic_path` left by a killed build."""
    found = [p for p in root.glob(".*.partial-*") if p.is_file()]
    for folder in (root / name for name in MANAGED):
        if folder.is_dir():
            found += [p for p in folder.rglob(".*.partial-*") if p.is_file()]
    return found


def cached_weights(root: Path) -> list[Path]:
    """Weights that ``helpers.training`` cached beside this cohort (``models/<name>-<key>.pt``)."""
    folder = root / "models"
    if not folder.is_dir():
        return []
    ours = re.compile(r"^(.+-[0-9a-f]{12}\.pt|\..+\.partial-\d+\.pt)$")
    return [p for p in folder.iterdir() if p.is_file() and ours.match(p.name)]


def _build_outputs(root: Path, m: Manifest) -> set[str]:
    """Every path (relative to ``root``) a build of the manifest's plan writes; empty when
    the manifest names no plan that can be made."""
    try:
        specs = m.specs()
    except (TypeError, ValueError):
        return set()
    paths = CohortPaths(root)
    files = [paths.thumbnail_path(s.name) for s in specs]
    return set(paths.expected_files(specs)) | {p.relative_to(root).as_posix() for p in files}


def _removable(root: Path, records: Iterable[Any], allowed: set[str]) -> list[str]:
    """The entries of ``records`` that may be deleted: files the build writes (``allowed``)
    that lie inside ``root`` once links are resolved. Any other entry (``../victim``, an
    absolute path, a reader's file named in a damaged or edited manifest) is left alone,
    with a warning."""
    inside, refused = [], []
    top = root.resolve()
    for rel in records:
        path = root / str(rel)
        ok = isinstance(rel, str) and rel in allowed and path.resolve().is_relative_to(top)
        (inside if ok else refused).append(rel)
    if refused:
        warnings.warn(
            f"{root / MANIFEST} lists {len(refused)} path(s) the demo never writes there "
            f"({', '.join(map(str, refused[:5]))}): left alone.",
            stacklevel=3,
        )
    return inside


def remove_listed(root: Path, m: Manifest | None) -> None:
    """Delete the files the manifest ``m`` lists that its build writes inside ``root`` (and
    the folders they leave empty), the cached weights of this cohort, and nothing else."""
    records = _removable(root, m.files, _build_outputs(root, m)) if m is not None else []
    for rel in records:
        (root / rel).unlink(missing_ok=True)
    for path in cached_weights(root) + partial_files(root):
        path.unlink(missing_ok=True)
    for folder in sorted(
        {(root / rel).parent for rel in records} | {root / "models"}, reverse=True
    ):
        while folder != root and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
            folder = folder.parent
