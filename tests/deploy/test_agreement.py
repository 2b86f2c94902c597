"""The chart and the kustomize overlays deploy the same thing, and both follow the artifact contract."""

from __future__ import annotations

import json
import re

import pytest

from serving.limits import Limits

from . import render
from .conftest import ALL_RENDERS, RENDER_IDS
from .tools import makefile_image

# The artifact contract's production prefix, or one version (a canary). The trailing slash keeps
# KServe's prefix download to that folder (test_storage_uri.py shows why).
PRODUCTION_URI = "s3://models/diabetes-rf/production/"
VERSION_URI = re.compile(r"s3://models/diabetes-rf/v[1-9][0-9]*/")
IMAGE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
S3_ANNOTATIONS = ("s3-endpoint", "s3-usehttps", "s3-region", "s3-verifyssl")
HELM_HOOK = "helm.sh/hook"  # `helm test` pods have no kustomize twin
POD_SECURITY_LABEL = "pod-security.kubernetes.io/"


def _annotations(doc):
    return doc["metadata"].get("annotations", {})


def _config_data(doc):
    return {key: json.loads(value) if key.endswith(".json") else value for key, value in doc["data"].items()}


def _pod_security(doc):
    return {k: v for k, v in doc["metadata"].get("labels", {}).items() if k.startswith(POD_SECURITY_LABEL)}


# What must agree per kind; other labels and selectors legitimately differ (namespaces: test_namespaces.py).
PROJECTIONS = {
    "Namespace": _pod_security,
    "InferenceService": lambda d: (_annotations(d), d["spec"]),
    "ServingRuntime": lambda d: (_annotations(d), d["spec"]),
    "ServiceAccount": lambda d: (d.get("automountServiceAccountToken"), d.get("secrets")),
    "Secret": lambda d: (_annotations(d), d.get("type"), d.get("data")),
    "ConfigMap": _config_data,
    "Service": lambda d: d["spec"]["ports"],
    "StatefulSet": lambda d: (d["spec"]["template"]["spec"], [c["spec"] for c in d["spec"]["volumeClaimTemplates"]]),
    "Job": lambda d: ({k: v for k, v in d["spec"].items() if k != "template"}, d["spec"]["template"]["spec"]),
    "Role": lambda d: d["rules"],
    "RoleBinding": lambda d: (d["roleRef"], d["subjects"]),
}


def _deployed(docs, with_namespace=True):
    """Objects by (kind, name), without `helm test` pods (and without the Namespace if asked)."""
    return {(d["kind"], d["metadata"]["name"]): d for d in docs
            if (with_namespace or d["kind"] != "Namespace") and _annotations(d).get(HELM_HOOK) != "test"}


@pytest.mark.parametrize("mode", [m for m in render.CHART_MODES if m.overlay], ids=lambda m: m.name)
def test_chart_and_overlay_deploy_the_same(rendered, mode):
    chart = _deployed(rendered("helm", mode.name))
    # kustomize always creates the Namespace; the chart only with namespace.create (own-namespace).
    overlay = _deployed(rendered("kustomize", mode.overlay), with_namespace=("Namespace", render.NAMESPACE) in chart)
    assert sorted(chart) == sorted(overlay)
    for key, chart_doc in chart.items():
        project = PROJECTIONS[key[0]]
        assert project(chart_doc) == project(overlay[key]), f"{key} differs between chart and {mode.overlay}"


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_render_follows_the_serving_contract(rendered, source, name):
    docs = rendered(source, name)
    isvc = render.only(docs, "InferenceService")
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["protocolVersion"] in ("v2", "grpc-v2")
    assert model["storageUri"] == PRODUCTION_URI or VERSION_URI.fullmatch(model["storageUri"]), model["storageUri"]
    assert model["modelFormat"]["name"] == "sklearn"
    assert model["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert model["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # Explicit probe timeouts, and a drain (SERVING_GRACE_S, 20 s) that ends before the kubelet's SIGKILL.
    assert model["readinessProbe"]["timeoutSeconds"] >= 1 and model["livenessProbe"]["timeoutSeconds"] >= 1
    assert predictor["terminationGracePeriodSeconds"] > Limits().grace_s
    assert model["resources"]["requests"] and model["resources"]["limits"]

    runtimes = render.find(docs, "ServingRuntime", model["runtime"])
    if runtimes:  # this project's runtime; otherwise KServe's stock one by name
        runtime = runtimes[0]["spec"]
        assert runtime["protocolVersions"] == ["v2", "grpc-v2"]
        assert runtime["containers"][0]["image"] == makefile_image("SERVING_IMAGE")
        assert "--model_name={{.Name}}" in runtime["containers"][0]["args"]
        # KServe would put a runtimeVersion on this runtime's image, replacing the project's tag.
        assert "runtimeVersion" not in model
    else:
        assert model["runtime"] == "kserve-sklearnserver"
        # Pinned, so the stock image's scikit-learn is a known one, not whatever the cluster ships.
        assert IMAGE_TAG.fullmatch(model.get("runtimeVersion", "")), model.get("runtimeVersion")

    # The predictor's account lists the Secret KServe takes the S3 credentials from.
    account = render.only(docs, "ServiceAccount", predictor["serviceAccountName"])
    secret_name = account["secrets"][0]["name"]
    secrets = render.find(docs, "Secret", secret_name)
    if name == "existing-secret":
        assert secrets == [] and secret_name == "my-s3-credentials"
        return
    secret = secrets[0]
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    annotations = _annotations(secret)
    assert all(f"serving.kserve.io/{key}" in annotations for key in S3_ANNOTATIONS)
    assert annotations["serving.kserve.io/s3-usehttps"] == "0"


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_render_sets_a_consistent_autoscaling_mode(rendered, source, name):
    isvc = render.only(rendered(source, name), "InferenceService")
    predictor = isvc["spec"]["predictor"]
    mode = _annotations(isvc)["serving.kserve.io/deploymentMode"]
    assert 0 <= predictor["minReplicas"] <= predictor["maxReplicas"]
    if mode == "Serverless":
        assert predictor["scaleMetric"] in ("concurrency", "rps")
        hard_limit = predictor.get("containerConcurrency", 0)  # 0: unlimited
        if predictor["scaleMetric"] == "concurrency" and hard_limit:  # a target above it is never reached
            assert hard_limit >= predictor["scaleTarget"]
    else:
        assert mode == "RawDeployment"
        assert _annotations(isvc)["serving.kserve.io/autoscalerClass"] == "hpa"
        assert predictor["scaleMetric"] == "cpu" and predictor["minReplicas"] >= 1
        assert "canaryTrafficPercent" not in predictor and "containerConcurrency" not in predictor


def test_minio_endpoint_follows_the_minio_option(rendered):
    for source, name in (("kustomize", "with-minio"), ("helm", "with-minio")):
        secret = render.only(rendered(source, name), "Secret", "model-reader-s3")
        assert _annotations(secret)["serving.kserve.io/s3-endpoint"] == "minio:9000"
    secret = render.only(rendered("kustomize", "serverless"), "Secret", "model-reader-s3")
    assert _annotations(secret)["serving.kserve.io/s3-endpoint"] == "minio-service.kubeflow:9000"
