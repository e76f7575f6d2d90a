"""Shared fixtures and the test tiers. Our tests are collected with ``--import-mode=importlib``
and this folder is not a package, so torchmil's own top-level ``tests`` package can never
shadow it.

Tiers: ``make check`` runs the tests not marked ``slow`` (under a minute on 2 cores, no demo
cohort needed); ``make unit-tests`` and ``make test`` run them all. A test is ``slow`` when it
carries ``@pytest.mark.slow`` or uses a fixture of :data:`SLOW_FIXTURES` (the full demo cohort,
the rehearsal folders), which :func:`pytest_collection_modifyitems` marks here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers.demo import COHORT_VERSION, ensure_cohort
from helpers.settings import load_settings

#: Fixtures that need data ``make cohort`` / ``make rehearsal`` write (minutes to build)
SLOW_FIXTURES = {"demo_dir", "demo_settings", "rehearsal", "rehearsal_nolabels", "slides"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a fixture of :data:`SLOW_FIXTURES` as ``slow``."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The book's demo cohort, as ``make cohort`` leaves it. Never built here: building it
    takes minutes and 1.1 GB, so a missing or unfinished cohort fails with the command."""
    cfg = load_settings()
    if not cfg.is_demo:
        pytest.fail("unit tests run on the demo cohort: unset MIL_BOOK_DATA")
    root = cfg.job_dir.parent
    manifest = root / "cohort.json"
    info = json.loads(manifest.read_text()) if manifest.is_file() else {}
    if not info.get("complete") or info.get("pending") or info.get("version") != COHORT_VERSION:
        pytest.fail(
            f"no complete, current demo cohort in {root}: run `make cohort` first"
            " (`python -m helpers.demo`), or only the fast tier, `make check`"
        )
    return ensure_cohort(root, quiet=True)  # checks every file's size and time (seconds)


@pytest.fixture(scope="session")
def demo_settings(demo_dir):
    """Settings pointing at the demo cohort."""
    return load_settings()
