"""Every overlay and every documented chart mode renders, and every object validates strictly."""

from __future__ import annotations

import pytest

from . import render
from .conftest import ALL_RENDERS, RENDER_IDS
from .schemas import K8S_VERSIONS, builtin_document_errors, kserve_document_errors

DOCUMENTED_OVERLAYS = {"serverless", "raw", "stock-runtime", "with-minio"}


def test_documented_overlays_exist():
    assert DOCUMENTED_OVERLAYS <= set(render.overlay_names())


def test_validates_oldest_and_newest_kubernetes():
    assert K8S_VERSIONS[0].startswith("1.29")
    assert K8S_VERSIONS[-1] > K8S_VERSIONS[0]


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_builtin_kinds_pass_kubernetes_validate_strict(rendered, source, name):
    docs = rendered(source, name)
    kinds = {doc["kind"] for doc in docs}
    assert {"InferenceService", "ServiceAccount"} <= kinds, f"{source}:{name} rendered only {sorted(kinds)}"
    assert builtin_document_errors(docs) == []


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_kserve_kinds_pass_strict_crd_schemas(rendered, crds, source, name):
    assert kserve_document_errors(rendered(source, name), crds) == []


@pytest.mark.parametrize("mode", render.CHART_MODES, ids=lambda mode: mode.name)
def test_chart_lints_strict(helm, mode):
    output = render.helm_lint(helm, mode.values)
    assert "0 chart(s) failed" in output
