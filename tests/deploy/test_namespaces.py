"""Every object lands in the project's namespace with the project's labels, and every name a pod or
account refers to (Secret, ConfigMap, ServiceAccount) is rendered beside it in that namespace.

An object without metadata.namespace goes wherever `kubectl apply` points, so a Job that cannot
see its Secrets, or a short Service name that does not resolve, only shows up in a cluster.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from . import render
from .conftest import ALL_RENDERS, RENDER_IDS
from .podsecurity import pod_specs

PART_OF = ("app.kubernetes.io/part-of", "sklearn-kserve-mlops")
# Referenced but created by the user, never rendered (the chart's existing-secret mode).
EXTERNAL = {("Secret", "my-s3-credentials")}


def _namespace(doc: render.Doc) -> str | None:
    return doc["metadata"].get("namespace")


def _label(doc: render.Doc) -> str:
    return f"{doc['kind']}/{doc['metadata']['name']}"


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_every_namespaced_object_is_in_the_project_namespace(rendered, source, name):
    docs = rendered(source, name)
    placed = {_label(d): _namespace(d) for d in docs
              if d["kind"] not in render.CLUSTER_SCOPED_KINDS}
    assert placed == dict.fromkeys(placed, render.NAMESPACE)
    for namespace in render.find(docs, "Namespace"):
        assert namespace["metadata"]["name"] == render.NAMESPACE and _namespace(namespace) is None


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_every_object_carries_the_project_labels(rendered, source, name):
    labels = {_label(d): d["metadata"].get("labels", {}).get(PART_OF[0])
              for d in rendered(source, name)}
    assert labels == dict.fromkeys(labels, PART_OF[1])


def _references(docs: list[render.Doc]) -> Iterator[tuple[str, str, str, str | None]]:
    """(referrer, kind, name, namespace) for every Secret, ConfigMap and ServiceAccount named."""
    namespaces = {_label(doc): _namespace(doc) for doc in docs}
    for doc in docs:
        referrer, namespace = _label(doc), _namespace(doc)
        if doc["kind"] == "ServiceAccount":
            for secret in doc.get("secrets", []):
                yield referrer, "Secret", secret["name"], namespace
        if doc["kind"] == "InferenceService" and "serviceAccountName" in doc["spec"]["predictor"]:
            yield referrer, "ServiceAccount", doc["spec"]["predictor"]["serviceAccountName"], namespace
    for label, pod in pod_specs(docs):
        namespace = namespaces[label]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                yield label, "Secret", volume["secret"]["secretName"], namespace
            if "configMap" in volume:
                yield label, "ConfigMap", volume["configMap"]["name"], namespace
        for container in pod["containers"]:
            for env in container.get("env", []):
                for kind, key in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                    if key in env.get("valueFrom", {}):
                        yield label, kind, env["valueFrom"][key]["name"], namespace
            for source in container.get("envFrom", []):
                for kind, key in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                    if key in source:
                        yield label, kind, source[key]["name"], namespace


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_every_reference_resolves_in_the_same_namespace(rendered, source, name):
    docs = rendered(source, name)
    present = {(d["kind"], d["metadata"]["name"], _namespace(d)) for d in docs}
    references = list(_references(docs))
    assert references, "no references found: the walk over the render is broken"
    dangling = [f"{referrer} -> {kind}/{ref} in {namespace}" for referrer, kind, ref, namespace in references
                if (kind, ref, namespace) not in present and (kind, ref) not in EXTERNAL]
    assert dangling == []


def test_reference_check_catches_an_object_outside_the_namespace(rendered):
    # The with-minio bug this guards against: the component's objects lost the overlay's namespace.
    docs = rendered("kustomize", "with-minio")
    render.only(docs, "Job")["metadata"].pop("namespace")
    present = {(d["kind"], d["metadata"]["name"], _namespace(d)) for d in docs}
    dangling = {(kind, ref) for _, kind, ref, ns in _references(docs) if (kind, ref, ns) not in present}
    assert {("Secret", "model-reader-s3"), ("Secret", "model-writer"), ("ConfigMap", "minio-bucket-setup")} <= dangling
