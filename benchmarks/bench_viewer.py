"""Benchmark: what chapter 6's slide viewers add to ``make book``, in megabytes and seconds.

Chapter 6 writes a deep-zoom viewer (``helpers.viewer``) for two test slides of the demo:
the micro-metastasis and the macro-metastasis with satellite foci, which it picks with the
trained model. This script picks the same kinds from the cohort without training: the
annotated test slide with the fewest tumour patches (a micro-metastasis) and the one with
the most annotated lesions (the macro with satellites), writes both viewers as the chapter
does (into a temporary folder, with random scores: the tiles do not depend on them), prints the
bytes the site gains (both viewers' folders and OpenSeadragon) and the time to write them
(the wall time, and the CPU time, which the verdict uses: other jobs on a shared machine
stretch the first, not the second), each against its budget (``benchmarks/budgets.py``: at
most 80 MB and 30 s).

Usage::

    PYTHONPATH=. python benchmarks/bench_viewer.py [--root data/demo] [--slides A B]

``--root`` is the demo cohort (default: ``MIL_BOOK_DEMO_DIR``, else ``data/demo``) or a
rehearsal folder (``tests/rehearsal.py``), whose numbers are for information: the budgets are
the demo's, the book's. Exit status 1 when a budget is missed by more than the noise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from budgets import VIEWER_SECONDS, VIEWER_SITE_MB, failed, verdict  # noqa: E402

from helpers.annotations import read_polygons  # noqa: E402
from helpers.formats import read_coords, read_patch_labels  # noqa: E402
from helpers.layout import ANNOTATIONS_DIR, JOB_DIR, WSIS_DIR, TridentLayout  # noqa: E402
from helpers.viewer import write_slide_viewer  # noqa: E402


class Folder(TridentLayout):
    """The paths ``write_slide_viewer`` reads, for a cohort laid out like the demo's."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.job_dir = root / JOB_DIR
        self.patch_dir = next(p.name for p in self.job_dir.glob("*x_*px_*px_overlap"))
        self.encoder = ""

    def ensure_slides(self, *names: str) -> None:
        """A folder made in full: every slide is there already."""
        for name in names:
            self.wsi_path(name)

    def wsi_path(self, name: str) -> Path:
        return next((self.root / WSIS_DIR).glob(f"{name}.*"))

    def annotation_path(self, name: str) -> Path | None:
        path = self.root / ANNOTATIONS_DIR / f"{name}.xml"
        return path if path.exists() else None


def chapter_like_slides(folder: Folder) -> list[str]:
    """Chapter 6's two kinds of slide: the annotated slide with the fewest tumour patches
    (at least one; without patch labels, the fewest patches) and the one with the most
    annotated lesions, test slides first."""
    names = sorted(p.stem for p in (folder.root / ANNOTATIONS_DIR).glob("*.xml"))
    names = [n for n in names if folder.coords_path(n).exists()]
    names = [n for n in names if n.startswith("test")] or names
    if len(names) < 2:
        raise SystemExit(f"fewer than two annotated slides with coords in {folder.root}")

    def n_tumour(name: str) -> float:
        path = folder.patch_labels_path(name)
        if not path.exists():
            return len(read_coords(folder.coords_path(name))[1])
        n = int(read_patch_labels(path).sum())
        return n if n else np.inf

    micro = min(names, key=n_tumour)
    n_lesions = {n: len(read_polygons(folder.annotation_path(n))[0]) for n in names if n != micro}
    return [micro, max(n_lesions, key=n_lesions.get)]


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = os.environ.get("MIL_BOOK_DEMO_DIR") or str(REPO / "data" / "demo")
    parser.add_argument("--root", type=Path, default=Path(default))
    parser.add_argument("--slides", nargs="*", default=None)
    args = parser.parse_args(argv)
    folder = Folder(args.root.resolve())
    slides = args.slides or chapter_like_slides(folder)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "_viewers"
        start, cpu_start = time.perf_counter(), time.process_time()
        for name in slides:
            n = len(read_coords(folder.coords_path(name))[1])
            print(write_slide_viewer(folder, name, rng.random(n), root=root).summary())
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        mb = folder_mb(root)
        osd_mb = folder_mb(root / "openseadragon")
    demo = (args.root / "cohort.json").exists()  # the demo cohort's manifest
    print(f"slides: {', '.join(slides)} ({args.root})")
    print(f"OpenSeadragon: {osd_mb:.2f} MB")
    # On a shared machine the wall time counts the other jobs' turns on the cores; the
    # process's CPU time does not, and bounds the wall time on an idle machine (the tiles are
    # written by threads, so with two idle cores the wall time is lower still).
    print(f"tile-writing wall time: {seconds:.1f} s (load average {os.getloadavg()[0]:.1f})")
    results = [
        ("site size", mb, VIEWER_SITE_MB, "MB"),
        ("tile-writing time (CPU)", cpu_seconds, VIEWER_SECONDS, "s"),
    ]
    verdicts = []
    for what, value, goal, unit in results:
        if demo:
            verdicts.append(verdict(value, goal, higher_is_better=False))
            print(f"{what}: {value:.1f} {unit} (budget {goal:.0f} {unit}) {verdicts[-1]}")
        else:  # the budgets are the book's, on the demo
            print(f"{what}: {value:.1f} {unit} (for information: not the demo cohort)")
    return 1 if failed(verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
