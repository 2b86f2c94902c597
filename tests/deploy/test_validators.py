"""The checks themselves catch what they are for: a validator that never fails proves nothing."""

from __future__ import annotations

import pytest

from .render import only
from .schemas import K8S_VERSIONS, builtin_document_errors, builtin_errors, kserve_document_errors


@pytest.fixture
def isvc(rendered):
    return only(rendered("kustomize", "serverless"), "InferenceService")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["spec"]["predictor"]["model"].update(storageURI="s3://x/y"), "storageURI"),
        (lambda d: d["spec"]["predictor"].update(minReplica=1), "minReplica"),
        (lambda d: d["spec"]["predictor"].update(scaleMetric="latency"), "latency"),
        (lambda d: d["spec"]["predictor"]["model"]["modelFormat"].pop("name"), "'name' is a required"),
        (lambda d: d["metadata"].update(annotation={"a": "b"}), "annotation"),
    ],
    ids=["unknown-field", "typo-in-predictor", "bad-enum", "missing-required", "metadata-typo"],
)
def test_strict_crd_check_rejects(crds, isvc, mutate, expected):
    mutate(isvc)
    errors = kserve_document_errors([isvc], crds)
    assert errors and expected in " ".join(errors)


def test_strict_builtin_check_rejects_unknown_field():
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a"}, "automountToken": False}
    for version in K8S_VERSIONS:
        assert "automountToken" in " ".join(builtin_errors(account, version))


def test_unknown_kind_is_an_error_not_a_pass():
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert any("Widget" in error for error in builtin_document_errors([widget]))


def test_unknown_kserve_kind_is_an_error(crds):
    graph = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraph", "metadata": {"name": "g"}}
    assert any("no KServe CRD schema" in error for error in kserve_document_errors([graph], crds))
