"""Pins that must match: pyproject.toml, constraints.txt, the tested venv and the images."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO_ROOT = Path(__file__).resolve().parents[1]


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines.extend(extra)
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("requirement", _pyproject_requirements(), ids=str)
def test_pyproject_pin_agrees_with_constraints(requirement):
    pinned = _constraints().get(canonicalize_name(requirement.name))
    assert pinned is not None, f"{requirement.name} is in pyproject.toml but not in constraints.txt: run make lock"
    assert requirement.specifier.contains(pinned), (
        f"pyproject.toml wants {requirement}, constraints.txt pins {pinned}: run make lock")


def test_installed_versions_are_the_constrained_ones():
    wrong = {}
    for name, version in _constraints().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            wrong[name] = ("missing", version)
            continue
        if installed != version:
            wrong[name] = (installed, version)
    assert not wrong, f"installed vs constraints.txt: {wrong}; run make install (or make lock after a deliberate bump)"


def test_scikit_learn_is_pinned_exactly():
    # The server unpickles with the version that trained: a range here would let them drift apart.
    specs = [r.specifier for r in _pyproject_requirements() if canonicalize_name(r.name) == "scikit-learn"]
    assert len(specs) == 1 and re.fullmatch(r"==\d+\.\d+\.\d+", str(specs[0])), specs


@pytest.mark.parametrize("dockerfile", ["components/Dockerfile", "serving/Dockerfile"])
def test_images_install_with_the_constraints(dockerfile):
    text = (REPO_ROOT / dockerfile).read_text()
    assert "COPY constraints.txt" in text
    installs = [line for line in text.splitlines() if "pip install" in line and not line.startswith("#")]
    assert installs and all("-c /deps/constraints.txt" in line for line in installs), (dockerfile, installs)
    assert "!constraints.txt" in (REPO_ROOT / ".dockerignore").read_text().splitlines()
