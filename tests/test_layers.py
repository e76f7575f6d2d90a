"""The import contract of helpers/ (pyproject.toml, ``[tool.importlinter]``): no import
cycle, and each module imports only from the layers below its own. ``make lint`` runs the
same check; here it must also fail where a cycle is planted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(
    not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e .[test])"
)


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``helpers`` package and ``pyproject.toml`` under ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "helpers", root / "helpers", ignore=shutil.ignore_patterns("*.npz"))
    shutil.copy(REPO / "pyproject.toml", root)
    return root


def test_the_contract_holds():
    res = _lint_imports(REPO)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


@pytest.mark.parametrize(
    ("module", "planted", "contract"),
    [
        # slide reading must not need the canvases, which are built on it: a cycle
        ("slide.py", "from helpers import canvas  # noqa", "No import cycles"),
        # the layout is at the bottom: importing the settings from it breaks the layers
        ("layout.py", "import helpers.settings  # noqa", "higher layers import lower"),
        # the demo's plan must not import its builder (a cycle inside helpers.demo)
        ("demo/plan.py", "import helpers.demo.build  # noqa", "helpers.demo"),
    ],
)
def test_a_planted_import_breaks_the_contract(tmp_path, module, planted, contract):
    root = _copy(tmp_path)
    assert _lint_imports(root).returncode == 0, "the copy keeps the contract"
    path = root / "helpers" / module
    path.write_text(path.read_text() + f"\n{planted}\n")
    res = _lint_imports(root)
    assert res.returncode != 0, res.stdout
    broken = [line for line in res.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), res.stdout
