"""Session fixtures: the CLIs, the CRD validator, and each render done once and shared."""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Callable

import pytest

from . import render
from .schemas import CrdValidator
from .tools import CRD_SCHEMAS_ENV, ToolMissing, copy_manifests, crd_schema_dir, find_tool

Renderer = Callable[[str, str], list[render.Doc]]
MODES_BY_NAME = {mode.name: mode for mode in render.CHART_MODES}


def _tool(name: str, hint: str) -> str:
    try:
        return find_tool(name, hint)
    except ToolMissing as missing:
        pytest.fail(str(missing), pytrace=False)


@pytest.fixture(scope="session")
def helm() -> str:
    return _tool("helm", "run `make helm` (installs helm 3.18 into .tools/bin)")


@pytest.fixture(scope="session")
def kubectl() -> str:
    return _tool("kubectl", "run `make helm` (installs kubectl next to helm in .tools/bin)")


@pytest.fixture(scope="session")
def crds() -> CrdValidator:
    folder = crd_schema_dir()
    try:
        return CrdValidator(folder)
    except FileNotFoundError as missing:
        pytest.skip(f"KServe kinds NOT validated: {missing}. Put the schemas at ../shared/schemas/kserve "
                    f"beside the repo or set {CRD_SCHEMAS_ENV}.")


@pytest.fixture(scope="session")
def manifests(tmp_path_factory) -> Path:
    """manifests/ copied with each *.local.env made from its example and filled in, as a user does."""
    return copy_manifests(tmp_path_factory.mktemp("deploy") / "manifests")


@pytest.fixture(scope="session")
def rendered(helm, kubectl, manifests) -> Renderer:
    """rendered("kustomize", overlay) or rendered("helm", mode name): parsed documents, built once."""

    @lru_cache(maxsize=None)
    def build(source: str, name: str) -> tuple[render.Doc, ...]:
        if source == "kustomize":
            return tuple(render.kustomize(kubectl, name, manifests))
        mode = MODES_BY_NAME[name]
        values = render.TEST_CREDENTIAL_VALUES + mode.values
        return tuple(render.helm_template(helm, values, namespace=mode.release_namespace, allow_placeholders=False))

    return lambda source, name: copy.deepcopy(list(build(source, name)))


# Every render the suite checks, as pytest parameters: ("kustomize", overlay) and ("helm", mode).
ALL_RENDERS = [("kustomize", name) for name in render.overlay_names()] + [
    ("helm", mode.name) for mode in render.CHART_MODES
]
RENDER_IDS = [f"{source}:{name}" for source, name in ALL_RENDERS]
