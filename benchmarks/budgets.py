"""Every speed goal of the benchmarks, in one place: the scripts of ``benchmarks/`` and
``make bench`` read them here (``demo_quality.py`` keeps its goals on the cohort's
difficulty in its own docstring).

A goal is either a speed-up (the slow way's time over ours, both measured side by side in
one run) or a wall time on a 2-core machine. A shared machine adds noise: other jobs take
the cores in bursts, so a ratio moves by about a fifth between runs and a time by more. A
result therefore FAILs only when it misses its goal by more than :data:`NOISE`; between the
goal and that margin it is a ``MISS (within noise)``, which does not fail the run.
"""

from __future__ import annotations

#: Share by which a result may miss its goal before it fails (the noise of a shared machine).
NOISE = 0.25

# ---- helpers.canvas and helpers.coverage against the per-patch way (bench_labels_canvas.py)
#: Canvas speed-up on the demo slides (issue 20).
CANVAS_SPEEDUP_DEMO = 100.0
#: Canvas speed-up on the rehearsal folder's CAMELYON16-size slide (issue 20).
CANVAS_SPEEDUP_REHEARSAL = 50.0
#: Labels-from-mask speed-up, demo and rehearsal slides.
LABELS_SPEEDUP = 20.0

# ---- training, cold (no cached weights), 2 CPU cores (bench_training.py; issue 20)
#: Seconds of training per chapter: ABMIL (chapter 4), the mean-pooling baseline (chapter 5),
#: the nine models with three seeds (chapter 7's bulk training).
TRAINING_SECONDS = {"04": 15.0, "05": 15.0, "07": 60.0}
#: helpers.loop.fit against torchmil's Trainer, ABMIL on the demo, side by side (bench_loop.py).
LOOP_SPEEDUP = 1.5
#: What changes on a GPU: chapter 7's bulk training.
TRAINING_SECONDS_GPU = {"07": 20.0}

# ---- the demo cohort (bench_cohort.py, bench_setup.py)
#: A chapter's first cell with the cohort in place: ``setup()`` in a fresh process (issue 11).
SETUP_CACHED_SECONDS = 2.0
#: ``setup()``'s fast start in an empty folder: the h5 files written from the shipped arrays
#: (the README: "in seconds").
SETUP_COLD_SECONDS = 10.0
#: A full build from pixels, seconds per slide for one worker: the README's 7.5 minutes for
#: the 70 slides (262 patches on average) on 2 cores.
COHORT_SECONDS_PER_SLIDE = 13.0
#: Checking a complete cohort (``ensure_cohort`` again: sizes and times of every file).
COHORT_CACHED_SECONDS = 1.0

# ---- one CAMELYON16-size slide, step by step (bench_scale.py)
#: Seconds per step (grid, labels from mask and XML, canvas, thumbnail overlay).
SCALE_STEP_SECONDS = 5.0
#: Peak resident memory of the whole run, in MB.
SCALE_PEAK_MB = 1536.0

# ---- the slide viewer (bench_viewer.py; issue 21)
#: What chapter 6's two viewers (pyramids, attention layers, OpenSeadragon) add to the site.
VIEWER_SITE_MB = 80.0
#: Seconds to write them, added to `make book`.
VIEWER_SECONDS = 30.0


def verdict(value: float, goal: float, higher_is_better: bool = True) -> str:
    """``PASS`` when ``value`` meets ``goal``, ``MISS (within noise)`` when it misses it by at
    most :data:`NOISE`, else ``FAIL``."""
    if higher_is_better:
        met, near = value >= goal, value >= goal * (1 - NOISE)
    else:
        met, near = value <= goal, value <= goal * (1 + NOISE)
    return "PASS" if met else "MISS (within noise)" if near else "FAIL"


def failed(verdicts: list[str]) -> bool:
    """Whether any of ``verdicts`` (from :func:`verdict`) is a FAIL."""
    return any(v == "FAIL" for v in verdicts)
