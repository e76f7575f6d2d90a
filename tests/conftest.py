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
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers.demo import COHORT_VERSION, ensure_cohort
from helpers.settings import load_settings

#: Fixtures that need data ``make cohort`` / ``make rehearsal`` write (minutes to build)
SLOW_FIXTURES = {"demo_dir", "demo_settings", "rehearsal", "rehearsal_nolabels", "slides"}

#: Headless Chromium as the site and viewer checks run it: no GPU, no extensions, and every
#: remote host blocked, so a page sees what a reader without network sees
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE localhost",
]


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


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """``chromium(*args, timeout=...)``: run headless Chromium offline (:data:`CHROMIUM_FLAGS`,
    one profile for the session) and return its stdout; fails, naming the command, when
    Chromium is missing or exits with an error."""
    names = (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome")
    binary = next((shutil.which(n) for n in names if n and shutil.which(n)), None)
    if binary is None:
        pytest.fail("Chromium is not installed: `apt-get install -y chromium` (or CHROMIUM=...)")
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(*args: str, timeout: float) -> str:
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, f"chromium {args[-1]} failed:\n{result.stderr[-2000:]}"
        return result.stdout

    return run
