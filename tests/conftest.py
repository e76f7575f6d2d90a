"""Shared fixtures. Our tests are collected with ``--import-mode=importlib`` and this folder is
not a package, so torchmil's own top-level ``tests`` package can never shadow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.demo import ensure_cohort
from helpers.settings import load_settings


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The book's demo cohort (made once if missing; ``make test`` makes it beforehand)."""
    cfg = load_settings()
    if not cfg.is_demo:
        pytest.fail("unit tests run on the demo cohort: unset MIL_BOOK_DATA")
    return ensure_cohort(cfg.job_dir.parent, quiet=True)


@pytest.fixture(scope="session")
def demo_settings(demo_dir):
    """Settings pointing at the demo cohort."""
    return load_settings()
