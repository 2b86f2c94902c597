"""Every rendered pod meets the "restricted" Pod Security Standard and pins its images."""

from __future__ import annotations

import copy

import pytest

from .conftest import ALL_RENDERS, RENDER_IDS
from .podsecurity import pod_specs, violations
from .render import find, only


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_rendered_pods_are_restricted(rendered, source, name):
    pods = list(pod_specs(rendered(source, name)))
    assert pods, "no workloads found"
    assert {label: violations(pod) for label, pod in pods} == {label: [] for label, _ in pods}


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_images_are_pinned(rendered, source, name):
    docs = rendered(source, name)
    checked = []
    for label, pod in pod_specs(docs):
        for container in pod["containers"]:
            image = container.get("image")
            if image is None:
                # KServe's own runtime brings the image; runtimeVersion is its tag, so that is what is pinned.
                kind, _, isvc_name = label.partition("/")
                assert kind == "InferenceService", f"{label}: a container without an image"
                [isvc] = [d for d in find(docs, "InferenceService") if d["metadata"]["name"] == isvc_name]
                model = isvc["spec"]["predictor"]["model"]
                assert not find(docs, "ServingRuntime") and model.get("runtime"), f"{label}: no image, no runtime"
                image = f"{model['runtime']}:{model.get('runtimeVersion', '')}"
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest", f"{label}: image {image} has no pinned tag"
            checked.append(image)
    assert checked, "no container images found"


def _server(pod):
    return pod["containers"][0]


MUTATIONS = [
    (lambda pod: _server(pod)["securityContext"].update(privileged=True), "privileged"),
    (lambda pod: _server(pod)["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    (lambda pod: _server(pod)["securityContext"].update(runAsUser=0), "runAsUser is 0"),
    (lambda pod: _server(pod)["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    (lambda pod: _server(pod)["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccompProfile"),
    (lambda pod: _server(pod)["securityContext"]["capabilities"].update(drop=["NET_RAW"]), "drop ALL"),
    (lambda pod: _server(pod)["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]), "SYS_ADMIN"),
    (lambda pod: _server(pod)["securityContext"].update(readOnlyRootFilesystem=False), "readOnlyRootFilesystem"),
    (lambda pod: pod.update(hostNetwork=True), "hostNetwork"),
    (lambda pod: pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}}), "hostPath"),
    (lambda pod: _server(pod).setdefault("ports", []).append({"containerPort": 80, "hostPort": 80}), "hostPort"),
]


@pytest.mark.parametrize(("mutate", "expected"), MUTATIONS, ids=[expected for _, expected in MUTATIONS])
def test_check_catches_each_violation(rendered, mutate, expected):
    docs = rendered("kustomize", "serverless")
    [(_, pod)] = pod_specs([only(docs, "InferenceService"), only(docs, "ServingRuntime")])
    assert violations(pod) == []
    broken = copy.deepcopy(pod)
    mutate(broken)
    assert expected in " ".join(violations(broken))


def test_predictor_settings_override_the_runtime(rendered):
    docs = rendered("kustomize", "serverless")
    runtime = only(docs, "ServingRuntime")
    runtime["spec"]["containers"][0]["securityContext"] = {"privileged": True, "readOnlyRootFilesystem": False}
    [(_, pod)] = pod_specs([only(docs, "InferenceService"), runtime])
    # The predictor sets readOnlyRootFilesystem but not privileged: the runtime's privileged stays.
    assert violations(pod) == ["container kserve-container: privileged"]


def _bare_isvc(runtime_name: str) -> dict:
    """Another team's InferenceService on our runtime: no securityContext, volumes or probes."""
    model = {"modelFormat": {"name": "sklearn"}, "runtime": runtime_name, "storageUri": "s3://other/model/"}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": "other"}, "spec": {"predictor": {"model": model}}}


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_any_inference_service_on_the_runtime_is_restricted(rendered, source, name):
    runtimes = find(rendered(source, name), "ServingRuntime")
    if not runtimes:
        pytest.skip("stock runtime: KServe's own ClusterServingRuntime, not rendered here")
    [runtime] = runtimes
    [(_, pod)] = pod_specs([_bare_isvc(runtime["metadata"]["name"]), runtime])
    assert violations(pod) == []
    # The read-only root filesystem comes with its writable /tmp, or Python's tempfile fails.
    [server] = pod["containers"]
    mounts = {mount["mountPath"]: mount["name"] for mount in server["volumeMounts"]}
    assert "emptyDir" in {volume["name"]: volume for volume in pod["volumes"]}[mounts["/tmp"]]


def test_runtime_check_catches_a_runtime_without_security(rendered):
    runtime = only(rendered("kustomize", "serverless"), "ServingRuntime")
    runtime["spec"]["containers"][0].pop("securityContext")
    [(_, pod)] = pod_specs([_bare_isvc(runtime["metadata"]["name"]), runtime])
    assert "runAsNonRoot is not true" in " ".join(violations(pod))


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_predictor_security_is_per_container(rendered, source, name):
    # Knative rejects a pod-level securityContext unless kubernetes.podspec-securitycontext is on.
    predictor = only(rendered(source, name), "InferenceService")["spec"]["predictor"]
    assert "securityContext" not in predictor
    assert predictor["model"]["securityContext"]["runAsNonRoot"] is True
