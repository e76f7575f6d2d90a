"""The environment files, pyproject.toml and the Binder setup agree with each other."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest itself depends on tomli before Python 3.11
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
TRIDENT_REPO = "github.com/mahmoodlab/TRIDENT"
MIN_TRIDENT = (0, 3, 0)


def _load_yaml(name: str) -> dict:
    path = ROOT / name
    assert path.is_file(), f"{name} is missing"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    return data


def _conda_deps(env: dict) -> list[str]:
    return [d for d in env.get("dependencies", []) if isinstance(d, str)]


def _pip_deps(env: dict) -> list[str]:
    for dep in env.get("dependencies", []):
        if isinstance(dep, dict) and "pip" in dep:
            return list(dep["pip"])
    return []


def _python_pin(env: dict) -> str:
    pins = [d for d in _conda_deps(env) if re.fullmatch(r"python\s*=+.*", d)]
    assert len(pins) == 1, f"expected one python pin, got {pins}"
    return re.sub(r"python\s*=+\s*", "", pins[0])


def _name(requirement: str) -> str:
    """Normalised distribution name of a requirement string (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def torchmil_env() -> dict:
    return _load_yaml("environment-torchmil.yml")


@pytest.fixture(scope="module")
def trident_env() -> dict:
    return _load_yaml("environment-trident.yml")


def _editable_install_extras(pip_lines: list[str]) -> set[str]:
    """The extras of the ``-e .[a,b]`` line (exactly one such line expected)."""
    installs = [line for line in pip_lines if re.match(r"-e\s+\.(\[|$)", line.strip())]
    assert len(installs) == 1, f"expected one '-e .[...]' line, got {pip_lines}"
    match = re.search(r"\[([^\]]*)\]", installs[0])
    return {e.strip() for e in match.group(1).split(",")} if match else set()


def test_our_tests_are_collected_from_the_repository():
    # torchmil's wheel installs a top-level package named `tests`: make sure pytest runs
    # this file from the repository's tests/ folder, not something from site-packages.
    here = Path(__file__).resolve()
    assert here.parent == ROOT / "tests"
    assert not (ROOT / "tests" / "__init__.py").exists(), "tests/ must not be a package"
    # The module pytest registered under this test's name is this very file.
    assert Path(sys.modules[__name__].__file__).resolve() == here


def test_pyproject_declares_the_package_and_extras(pyproject):
    project = pyproject["project"]
    assert project["requires-python"] == ">=3.10"
    deps = {_name(d) for d in project["dependencies"]}
    for required in ["torch", "torchmil", "h5py", "openslide-python", "tifffile", "imagecodecs"]:
        assert required in deps
    assert "torchmil==1.0.2" in project["dependencies"]
    extras = project["optional-dependencies"]
    assert {"book", "test"} <= set(extras)
    assert any(_name(d) == "jupyter-book" and "<2" in d for d in extras["book"])
    assert {"jupytext", "ipykernel"} <= {_name(d) for d in extras["book"]}
    assert {"pytest", "nbval", "ruff"} <= {_name(d) for d in extras["test"]}
    include = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert all(p.split(".")[0] == "helpers" for p in include), include
    assert pyproject["tool"]["pytest"]["ini_options"]["addopts"] == "--import-mode=importlib"


def test_torchmil_env_installs_exactly_what_pyproject_declares(torchmil_env, pyproject):
    assert torchmil_env["name"] == "torchmil-book"
    assert _python_pin(torchmil_env) == "3.11"
    assert "pip" in _conda_deps(torchmil_env)
    pip_lines = _pip_deps(torchmil_env)
    extras = _editable_install_extras(pip_lines)
    declared = set(pyproject["project"]["optional-dependencies"])
    assert extras == {"book", "test"}
    assert extras <= declared, f"extras {extras - declared} are not in pyproject.toml"
    # One source of truth: nothing that pyproject declares is pinned again here.
    pyproject_names = {_name(d) for d in pyproject["project"]["dependencies"]}
    for group in pyproject["project"]["optional-dependencies"].values():
        pyproject_names |= {_name(d) for d in group}
    others = [line for line in pip_lines if not line.strip().startswith("-e")]
    conda_names = {_name(d) for d in _conda_deps(torchmil_env)} - {"python", "pip"}
    assert not ({_name(d) for d in others} | conda_names) & pyproject_names


def test_trident_env_pins_python_and_a_recent_tag(trident_env):
    assert trident_env["name"] == "trident"
    assert _python_pin(trident_env) == "3.10"
    assert "openslide" in _conda_deps(trident_env)
    pip_lines = _pip_deps(trident_env)
    trident = [line for line in pip_lines if TRIDENT_REPO.lower() in line.lower()]
    assert len(trident) == 1, pip_lines
    tag = re.search(r"@v(\d+)\.(\d+)\.(\d+)$", trident[0].strip())
    assert tag, f"TRIDENT must be pinned to a tag vX.Y.Z: {trident[0]}"
    assert tuple(int(p) for p in tag.groups()) >= MIN_TRIDENT
    assert {"openslide-python", "openslide-bin"} <= {_name(d) for d in pip_lines}


def test_binder_matches_the_torchmil_env(torchmil_env):
    binder = _load_yaml("binder/environment.yml")
    assert _python_pin(binder) == _python_pin(torchmil_env)
    assert "pip" in _conda_deps(binder)
    post_build = ROOT / "binder" / "postBuild"
    assert post_build.is_file() and post_build.stat().st_mode & 0o111, "postBuild not executable"
    script = post_build.read_text()
    assert script.startswith("#!")
    # The package is installed the same way as in environment-torchmil.yml: in the env file
    # itself, or (repo2docker copies the repository only after applying environment.yml)
    # from postBuild, which runs in the repository root.
    wanted = _editable_install_extras(_pip_deps(torchmil_env))
    in_env = [line for line in _pip_deps(binder) if line.strip().startswith("-e")]
    in_post_build = re.findall(r'pip install[^\n]*-e\s+"?\.\[([^\]]*)\]"?', script)
    assert len(in_env) + len(in_post_build) == 1, "install the package exactly once"
    if in_post_build:
        assert {e.strip() for e in in_post_build[0].split(",")} == wanted
    else:
        assert _editable_install_extras(in_env) == wanted
    assert re.search(r"^python -m helpers\.demo\b", script, re.M), "postBuild must make the cohort"


def test_ci_script_runs_the_readme_commands_as_a_newcomer_then_other_stacks():
    """CI runs `make book` and `make test` with no torch installed first (pip's own choice,
    as a newcomer gets), then every chapter under a perturbed back end and on Colab's stack."""
    script = (ROOT / ".ci" / "run").read_text()
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111
    assert "set -euo pipefail" in script
    commands = [line.strip() for line in script.splitlines() if not line.lstrip().startswith("#")]

    def first(pattern: str) -> int:
        hits = [i for i, line in enumerate(commands) if re.search(pattern, line)]
        assert hits, f".ci/run has no line matching {pattern!r}"
        return hits[0]

    assert not any(re.search(r"pip install\b.*\btorch\b", line) for line in commands)
    assert first(r"^make book$") < first(r"^make lint$") < first(r"^make test$")
    colab = first(r"^make colab\b")
    assert first(r"^make test$") < colab
    assert "MKL_CBWR=AVX2" in commands[colab] and "ATEN_CPU_CAPABILITY=default" in commands[colab]
    readme = (ROOT / "README.md").read_text()
    assert "make book" in readme and "make test" in readme


def _requirement(pyproject: dict, name: str):
    from packaging.requirements import Requirement

    found = [Requirement(d) for d in pyproject["project"]["dependencies"] if _name(d) == name]
    assert len(found) == 1, f"pyproject.toml must list {name} once"
    return found[0]


def test_installing_keeps_colab_and_ci_torch(pyproject):
    """Colab has torch 2.11 preinstalled, CI and Binder install 2.13.0 (CPU): pip keeps an
    installed torch only if every requirement accepts it, and a tensordict without an upper
    bound would one day ask for a newer torch."""
    torch = _requirement(pyproject, "torch")
    for version in ("2.11.0", "2.13.0", "2.13.0+cpu"):
        assert torch.specifier.contains(version), f"torch {version} rejected by {torch}"
    tensordict = _requirement(pyproject, "tensordict")
    assert tensordict.specifier.contains("0.15.3"), tensordict
    assert any(s.operator in ("<", "<=", "==", "~=") for s in tensordict.specifier), (
        f"{tensordict}: cap tensordict, or a new release will make pip upgrade torch"
    )
    # tensordict 0.15 needs torch >= 2.11: the torch floor must not be below what it needs.
    assert not torch.specifier.contains("2.10.0"), torch


def test_python_3_10_to_3_13_are_declared(pyproject):
    from packaging.specifiers import SpecifierSet

    requires = SpecifierSet(pyproject["project"]["requires-python"])
    classifiers = set(pyproject["project"].get("classifiers", []))
    for version in ("3.10", "3.11", "3.12", "3.13"):
        assert requires.contains(f"{version}.0"), f"requires-python excludes {version}"
        assert f"Programming Language :: Python :: {version}" in classifiers, version


def test_binder_installs_a_cpu_torch_before_the_package(pyproject):
    script = (ROOT / "binder" / "postBuild").read_text()
    pinned = re.search(r"^TORCH_VERSION=([\d.]+)$", script, re.M)
    assert pinned, "postBuild must pin TORCH_VERSION"
    assert _requirement(pyproject, "torch").specifier.contains(pinned.group(1))
    install = re.search(
        r'pip install[^\n]*"torch==\$\{TORCH_VERSION\}"[^\n]*'
        r"--index-url https://download\.pytorch\.org/whl/cpu",
        script,
    )
    assert install, "postBuild must install torch==$TORCH_VERSION from the CPU wheel index"
    package = script.index('-e ".[')
    assert install.start() < package, "torch must be installed before the package"
    assert "'+cpu'" in script[package:], "postBuild must check that torch is still the CPU one"
