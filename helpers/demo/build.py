"""Making the whole demo cohort: find it complete, or take the folder over (new, resumed,
repaired or forced), build the missing slides, then the label tables and patch labels."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm  # plain bars: no ipywidgets needed in notebooks

from helpers.demo import fast_start
from helpers.demo.manifest import (
    FileRecord,
    Manifest,
    complete_and_valid,
    file_record,
    same_plan,
    verify_files,
    writable,
)
from helpers.demo.plan import (
    COHORT_VERSION,
    DEFAULT_SIZES,
    PATCH_SIZE_LEVEL0,
    CohortError,
    CohortPaths,
    SlideSpec,
    plan_cohort,
)
from helpers.demo.safety import (
    Found,
    inspect_folder,
    lock_path,
    other_seed_message,
    partial_files,
    remove_listed,
    save_marker,
)
from helpers.demo.tables import cohort_summary, print_summary, write_tables
from helpers.demo.workers import build_slides
from helpers.fileio import file_lock
from helpers.layout import MASKS_DIR, demo_dir


@dataclass(frozen=True)
class BuildRequest:
    """One call of :func:`make_cohort`, its arguments checked."""

    root: Path
    seed: int
    sizes: tuple[tuple[int, int], tuple[int, int]]
    force: bool = False
    workers: int | None = None
    quiet: bool = False
    lazy: bool = False

    def say(self, *args: object) -> None:
        """``print`` unless the build is quiet."""
        if not self.quiet:
            print(*args)


def _check_arguments(seed: object, workers: object, sizes: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise CohortError(f"seed must be a whole number, not {seed!r}")
    if seed < 0:
        raise CohortError(f"seed must be 0 or more, not {seed}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1
    ):
        raise CohortError(f"workers must be a whole number of 1 or more, not {workers!r}")
    try:
        pairs = list(sizes)  # type: ignore[call-overload]
        ok = all(int(n) >= 0 for pair in pairs for n in pair) and len(pairs) == 2
        ok = ok and all(len(pair) == 2 for pair in pairs) and sum(map(sum, pairs)) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CohortError(f"sizes must be ((normal, tumour) train, test) counts, not {sizes!r}")


def make_cohort(
    out: str | os.PathLike | None = None,
    seed: int = 0,
    force: bool = False,
    workers: int | None = None,
    quiet: bool = False,
    sizes: tuple = DEFAULT_SIZES,
    lazy: bool = False,
) -> Path:
    """Make (or finish, repair, or just find) the demo cohort in ``out``; return its folder.

    ``lazy=True`` (what ``helpers.settings.setup()`` asks for) writes only what the h5-only
    chapters read, from arrays shipped with the package (:data:`fast_start.PACKED`, made by
    :func:`fast_start.pack_arrays`), in a few seconds; each slide's TIFF, mask, XML and
    thumbnail are then made when a chapter asks for them (:func:`fast_start.ensure_slide`). A full
    build (``lazy=False``, the command line) makes every file, and finishes a lazy cohort.

    Arguments:
        out: the cohort's folder; default where the chapters look (``MIL_BOOK_DEMO_DIR``,
            else ``data/demo`` of the checkout).
        seed: the random seed of the plan and the painting.
        force: delete what the manifest lists (and the weights cached beside it) and build
            again. The demo writes only into an empty or new folder, or one with its marker.
        workers: parallel processes (default: up to 4).
        quiet: print nothing.
        sizes: ((normal, tumour) slides in train, in test); the default is the book's cohort.
        lazy: the fast start (above).

    Returns:
        The cohort's folder, resolved.
    """
    _check_arguments(seed, workers, sizes)
    req = BuildRequest(
        Path(out if out is not None else demo_dir()).expanduser().resolve(),
        int(seed),
        (tuple(int(n) for n in sizes[0]), tuple(int(n) for n in sizes[1])),  # type: ignore[arg-type]
        force,
        workers,
        quiet,
        lazy,
    )
    found = inspect_folder(req.root)  # a foreign folder fails here, before anything is written
    if not force and _already_complete(req, found):
        return req.root
    if not writable(req.root):
        damaged = ""
        m = found.manifest
        if m is not None and same_plan(m.plan, req.seed, req.sizes):
            bad = verify_files(req.root, dict(m.files))
            damaged = f" Damaged or missing: {', '.join(sorted(bad)[:8]) or 'none'}."
        raise CohortError(
            f"--out {req.root} is not writable and holds no complete demo cohort (seed "
            f"{req.seed})." + damaged
        )
    req.root.parent.mkdir(parents=True, exist_ok=True)
    # two notebooks starting at once on a fresh machine: the second waits, then finds it done
    with file_lock(lock_path(req.root)):
        return _make_cohort(req)


def _already_complete(req: BuildRequest, found: Found) -> bool:
    done = complete_and_valid(found.manifest, req.root, req.seed, req.sizes, req.lazy)
    if done:
        req.say(f"Demo cohort already complete in {req.root} (seed {req.seed}).")
    return done


def _make_cohort(req: BuildRequest) -> Path:
    """:func:`make_cohort` once the lock is held."""
    found = inspect_folder(req.root)
    if not req.force and _already_complete(req, found):
        return req.root
    specs = plan_cohort(req.seed, req.sizes)
    m = Manifest.new(req.seed, req.sizes, specs)
    packed = fast_start.PACKED
    old = found.manifest
    unfinished_lazy = (
        old is not None
        and not req.force
        and bool(old.pending)
        and not old.complete
        and same_plan(old.plan, req.seed, req.sizes)
    )
    fresh = found.kind == "new" or unfinished_lazy
    if fresh and req.lazy and fast_start.packed_matches(packed, req.seed, req.sizes):
        return fast_start.make_lazy(req.root, m, specs, packed, req.say)
    m.files = _take_over(req, found, len(specs))
    for path in partial_files(req.root):  # left by a killed build (no build is running: lock)
        path.unlink()
    m.save(req.root)
    t0 = time.perf_counter()
    n_workers = req.workers or max(1, min(os.cpu_count() or 1, 4))
    _build_missing(req.root, specs, m, n_workers, req.quiet)
    _write_tables_and_labels(req.root, specs, m.files, req.quiet)
    m.complete = True
    m.pending = []
    m.save(req.root)
    if not req.quiet:
        print_summary(req.root, cohort_summary(req.root), time.perf_counter() - t0)
    return req.root


def _take_over(req: BuildRequest, found: Found, n_slides: int) -> dict[str, FileRecord]:
    """Mark ``req.root`` as ours and return the records of the files that can stay (none
    for a new folder, another version or ``force``; the intact ones to resume or repair)."""
    root, sizes = req.root, [list(x) for x in req.sizes]
    plan: dict[str, Any] = {"seed": req.seed, "version": COHORT_VERSION, "sizes": sizes}
    records: dict[str, FileRecord] = {}
    verb = "Making the"
    if found.kind == "new":
        root.mkdir(parents=True, exist_ok=True)
    else:
        m = found.manifest
        info = m.plan if m is not None else (found.marker or {})
        if req.force or info.get("version") != COHORT_VERSION:
            remove_listed(root, m)
        elif not same_plan(info, req.seed, req.sizes):
            raise CohortError(other_seed_message(root, info, req.seed))
        else:
            records = dict(m.files) if m is not None else {}
            bad = verify_files(root, records)
            for rel, why in sorted(bad.items()):
                req.say(f"{rel}: {why}; it will be made again.")
                records.pop(rel)
            verb = "Repairing the" if bad else "Finishing the interrupted"
    save_marker(root, plan)
    req.say(f"{verb} demo cohort in {root} (seed {req.seed}, {n_slides} slides)...")
    return records


def _build_missing(
    root: Path, specs: list[SlideSpec], m: Manifest, n_workers: int, quiet: bool
) -> None:
    """Build every slide whose files are not all in ``m.files``, saving the manifest after
    each (a progress bar unless the build is quiet)."""
    paths = CohortPaths(root)
    todo = [
        s
        for s in specs
        if not all(
            p.relative_to(root).as_posix() in m.files
            for p in paths.slide_files(s) + paths.processed_files(s)
        )
    ]
    bar = tqdm(
        total=len(specs), initial=len(specs) - len(todo), desc="slides", unit="slide", disable=quiet
    )
    finished: list[str] = []

    def on_done(name: str, files: dict[str, FileRecord]) -> None:
        m.files.update(files)
        finished.append(name)
        m.save(root)
        bar.update()

    try:
        build_slides(todo, root, m.seed, n_workers, on_done)
    except KeyboardInterrupt:
        bar.close()
        done = len(specs) - len(todo) + len(finished)
        print(
            f"\nInterrupted: {done} of {len(specs)} slides are done and kept in {root}; "
            "run the same command again to finish.",
            file=sys.stderr,
        )
        raise
    bar.close()


def _write_tables_and_labels(
    root: Path, specs: list[SlideSpec], records: dict[str, FileRecord], quiet: bool
) -> None:
    """The label CSVs, then ``patch_labels/`` by :func:`helpers.labels.label_folder`."""
    from helpers.labels import label_folder

    paths = CohortPaths(root)
    write_tables(root, specs, records)
    label_folder(
        csv_path=root / "wsi_labels.csv",
        coords_dir=paths.coords_dir,
        save_dir=paths.patch_labels_dir,
        masks_dir=root / MASKS_DIR,
        patch_size=PATCH_SIZE_LEVEL0,
        progress=not quiet,
    )
    for s in specs:
        path = paths.patch_labels_path(s.name)
        records[path.relative_to(root).as_posix()] = file_record(path)


def ensure_cohort(
    out: str | os.PathLike | None = None, seed: int = 0, quiet: bool = False, lazy: bool = False
) -> Path:
    """Make the demo cohort in ``out`` unless it is already complete and intact (then return
    at once: sizes and times checked against the manifest; see :func:`verify_files`).
    ``lazy``: see :func:`make_cohort`."""
    return make_cohort(out, seed=seed, quiet=quiet, lazy=lazy)


def default_out() -> Path:
    """Where the chapters look for the demo cohort (:func:`helpers.layout.demo_dir`)."""
    return demo_dir()
