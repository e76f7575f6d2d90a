"""The Makefile's targets: ``make help`` names every one a person may type."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()


def targets() -> set[str]:
    """Every explicit target of the Makefile: rule names that are plain words (not files
    such as ``$(STAMP)``, not pattern or special targets such as ``.PHONY`` or ``FORCE``)."""
    found = set()
    for line in MAKEFILE.splitlines():
        rule = re.match(r"^([a-z][a-z0-9 _-]*):(?!=)", line)
        if rule:
            found |= set(rule.group(1).split())
    return found


def test_the_parser_finds_the_targets():
    assert {"book", "test", "check", "lint", "help", "clean", "distclean"} <= targets()


def test_make_help_lists_every_target():
    out = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    listed = set(re.findall(r"\bmake ([a-z][a-z0-9-]*)", out.stdout))
    missing = targets() - listed
    assert not missing, f"`make help` does not name: {sorted(missing)}"


def test_the_fast_tier_leaves_out_slow_tests():
    check = re.search(r"^CHECK_CMD = (.*)$", MAKEFILE, re.MULTILINE)
    assert check is not None and '"not slow and not site and not chapters"' in check.group(1)
