"""Size limits of helpers/: a module holds one idea (at most 500 lines) and a function fits
on a screen (at most 60 lines, its docstring included)."""

from __future__ import annotations

import ast
from pathlib import Path

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules() -> list[Path]:
    return sorted(HELPERS.rglob("*.py"))


def test_the_package_has_modules_to_check():
    assert len(_modules()) > 20


def test_no_module_is_over_500_lines():
    long = {
        str(p.relative_to(HELPERS)): n
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_is_over_60_lines():
    long = {}
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                n = node.end_lineno - first + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(HELPERS)}:{node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_one_docstring_style():
    """Sections are Google style with ``Arguments:`` (not ``Args:``, not numpydoc's
    underlined ``Parameters``)."""
    other = {
        f"{p.relative_to(HELPERS)}:{i}": line.strip()
        for p in _modules()
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if line.strip() in ("Args:", "Parameters", "Params:")
    }
    assert not other, f"other docstring sections: {other}"
