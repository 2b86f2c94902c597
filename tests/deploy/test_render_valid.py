"""Every overlay and every documented chart mode renders, and every object validates strictly."""

from __future__ import annotations

import pytest

from . import render
from .conftest import ALL_RENDERS, RENDER_IDS
from .schemas import K8S_VERSIONS, builtin_document_errors, kserve_document_errors

DOCUMENTED_OVERLAYS = {"serverless", "raw", "stock-runtime", "with-minio"}


def test_documented_overlays_exist():
    assert DOCUMENTED_OVERLAYS <= set(render.overlay_names())


def _job(**spec) -> dict:
    template = {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36"}]}}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": {"template": template, **spec}}


# Valid in one supported release and not in the other: each version must really be checked.
ONLY_NEWEST = _job(managedBy="kueue.x-k8s.io/multikueue")  # Job.spec.managedBy arrived in 1.30
ONLY_OLDEST = {"apiVersion": "flowcontrol.apiserver.k8s.io/v1beta3", "kind": "PriorityLevelConfiguration",
               "metadata": {"name": "p"}, "spec": {"type": "Exempt"}}  # v1beta3 was removed in 1.32


@pytest.mark.parametrize(("doc", "failing_version"), [(ONLY_NEWEST, K8S_VERSIONS[0]), (ONLY_OLDEST, K8S_VERSIONS[-1])],
                         ids=["field-added-after-oldest", "api-removed-before-newest"])
def test_validates_oldest_and_newest_kubernetes(doc, failing_version):
    assert K8S_VERSIONS[0].startswith("1.29")
    errors = builtin_document_errors([doc])
    assert len(errors) == 1, errors
    assert failing_version.rsplit(".", 1)[0] in errors[0]


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
    output = render.helm_lint(helm, mode.values, namespace=mode.release_namespace)
    assert "0 chart(s) failed" in output
    assert "Fail:" not in output  # lint logs a template `fail` as [INFO] (and skm.refuse then errors)
