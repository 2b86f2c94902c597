"""components.deploy: its patches fit the KServe CRD, and its control flow (Ready, timeout and
rollback, 404, 403, conflicts) holds against a loopback stand-in of the Kubernetes API
(tests/deploy/kubeapi.py), reached through a real kubernetes.client configured by a kubeconfig."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from components import cli, deploy
from components.errors import (
    DeployConfigError,
    DeployConflict,
    DeployError,
    DeployForbidden,
    DeployNotFound,
    RolloutFailed,
)
from pipelines.local.s3server import free_port

from . import render
from .kubeapi import KubeApiStandIn, Raw, Serverless, merge_patch, settled
from .tools import MANIFESTS, REPO_ROOT

# What make deploy targets by default; the URIs stay literal: they are the contract version_uri must meet.
NAME, NAMESPACE = deploy.DEFAULT_ISVC, deploy.DEFAULT_NAMESPACE
PRODUCTION = "s3://models/diabetes-rf/production/"
V7 = "s3://models/diabetes-rf/v7/"
FAST = {"poll_s": 0.01}


def base_isvc() -> dict:
    """The InferenceService as manifests/base defines it, placed in the project namespace."""
    obj = yaml.safe_load((MANIFESTS / "base" / "inferenceservice.yaml").read_text())
    obj["metadata"]["namespace"] = NAMESPACE
    return obj


@pytest.fixture
def cluster(tmp_path, monkeypatch):
    """(stand-in, api): the stand-in serving the base InferenceService, Ready, in serverless mode."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with KubeApiStandIn(controller=Serverless()) as stand_in:
        stand_in.add(settled(base_isvc(), stand_in.controller))
        monkeypatch.setenv("KUBECONFIG", str(stand_in.kubeconfig(tmp_path)))
        yield stand_in, deploy.kubernetes_api()


def stored(stand_in) -> deploy.Served:
    return deploy.served(stand_in.get(NAMESPACE, NAME))


# ---- the patch bodies against the CRD schema ---------------------------------------------------

SCHEMA_RENDERS = [("kustomize", "serverless"), ("kustomize", "raw"), ("kustomize", "stock-runtime"),
                  ("helm", "default"), ("helm", "canary")]


@pytest.mark.parametrize(("source", "name"), SCHEMA_RENDERS, ids=[f"{s}:{n}" for s, n in SCHEMA_RENDERS])
@pytest.mark.parametrize("target", [deploy.Served(V7, None), deploy.Served(V7, 10), deploy.Served(PRODUCTION, None)],
                         ids=["version", "canary", "rollback-without-canary"])
def test_patched_render_passes_the_strict_crd_schema(rendered, crds, source, name, target):
    isvc = render.only(rendered(source, name), "InferenceService")
    assert crds.errors(isvc) == []
    patched = merge_patch(isvc, deploy.patch_body(target, "4711"))
    assert crds.errors(patched) == []
    assert deploy.served(patched) == target
    assert patched["metadata"]["resourceVersion"] == "4711"
    # Everything else in the spec is untouched.
    for doc in (isvc, patched):
        doc["spec"]["predictor"]["model"].pop("storageUri")
        doc["spec"]["predictor"].pop("canaryTrafficPercent", None)
        doc["metadata"].pop("resourceVersion", None)
    assert patched == isvc


def test_the_schema_check_would_catch_a_misspelt_field(rendered, crds):
    isvc = render.only(rendered("kustomize", "serverless"), "InferenceService")
    body = deploy.patch_body(deploy.Served(V7, 10), "1")
    body["spec"]["predictor"]["model"]["storageURI"] = body["spec"]["predictor"]["model"].pop("storageUri")
    errors = crds.errors(merge_patch(isvc, body))
    assert any("storageURI" in error for error in errors), errors


# ---- control flow against the stand-in ---------------------------------------------------------

def test_ready_serverless_rollout_patches_once_and_waits_for_the_new_revision(cluster):
    stand_in, api = cluster
    before = stand_in.get(NAMESPACE, NAME)
    result = deploy.rollout(NAME, NAMESPACE, V7, canary_percent=10, timeout_s=10, api=api, **FAST)

    assert result.changed and result.previous == deploy.Served(PRODUCTION, None)
    assert result.served == deploy.Served(V7, 10) == stored(stand_in)
    assert result.revision == f"{NAME}-predictor-00002"
    (patch,) = stand_in.patches()
    assert patch.content_type == "application/merge-patch+json" and patch.status == 200
    assert patch.body == {"metadata": {"resourceVersion": before["metadata"]["resourceVersion"]},
                          "spec": {"predictor": {"model": {"storageUri": V7}, "canaryTrafficPercent": 10}}}
    # It did not stop at the old revision's Ready=True: it polled until the new one was ready.
    gets_after_patch = stand_in.requests[stand_in.requests.index(patch) + 1:]
    assert len(gets_after_patch) >= 2 and all(r.method == "GET" for r in gets_after_patch)
    assert stand_in.get(NAMESPACE, NAME)["metadata"]["generation"] == 2


def test_without_canary_the_field_is_left_as_it_was(cluster):
    stand_in, api = cluster
    deploy.rollout(NAME, NAMESPACE, V7, canary_percent=25, timeout_s=10, api=api, **FAST)
    result = deploy.rollout(NAME, NAMESPACE, "s3://models/diabetes-rf/v8/", timeout_s=10, api=api, **FAST)
    assert result.served == deploy.Served("s3://models/diabetes-rf/v8/", 25) == stored(stand_in)


def test_raw_mode_waits_for_observed_generation_to_move(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    controller = Raw(ready_after=3)
    with KubeApiStandIn(controller=controller) as stand_in:
        stand_in.add(settled(base_isvc(), controller))
        monkeypatch.setenv("KUBECONFIG", str(stand_in.kubeconfig(tmp_path)))
        before = stand_in.get(NAMESPACE, NAME)["status"]["observedGeneration"]
        result = deploy.rollout(NAME, NAMESPACE, V7, timeout_s=10, api=deploy.kubernetes_api(), **FAST)
        after = stand_in.get(NAMESPACE, NAME)
    assert result.changed and result.revision is None
    assert after["status"]["observedGeneration"] == before + 1 != after["metadata"]["generation"]
    assert controller.waited >= 3  # it waited through ReplicaSetUpdated, not only for the counter


@pytest.mark.parametrize("controller", [Serverless(ready_after=None), Raw(ready_after=None)], ids=["serverless", "raw"])
def test_not_ready_in_time_rolls_back_and_says_so(tmp_path, monkeypatch, controller):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with KubeApiStandIn(controller=controller) as stand_in:
        stand_in.add(settled(base_isvc(), controller))
        monkeypatch.setenv("KUBECONFIG", str(stand_in.kubeconfig(tmp_path)))
        with pytest.raises(RolloutFailed) as failed:
            deploy.rollout(NAME, NAMESPACE, V7, canary_percent=10, timeout_s=0.3, api=deploy.kubernetes_api(),
                           **FAST)
        message = str(failed.value)
        assert f"{NAMESPACE}/{NAME} did not become Ready with {V7} with canaryTrafficPercent=10 within 0.3 s" in message
        assert f"rolled back: the spec says {PRODUCTION} again" in message
        assert stored(stand_in) == deploy.Served(PRODUCTION, None)
        forward, back = stand_in.patches()
        assert back.status == 200
        # The canary field was absent before: the rollback removes it (JSON null), and is conditional too.
        assert back.body["spec"]["predictor"] == {"model": {"storageUri": PRODUCTION}, "canaryTrafficPercent": None}
        assert back.body["metadata"]["resourceVersion"]
    if isinstance(controller, Serverless):
        assert "RevisionFailed" in message and f"latestCreatedRevision={NAME}-predictor-00002" in message


def test_rollback_leaves_a_change_made_by_someone_else_alone(cluster):
    stand_in, api = cluster
    other = "s3://models/diabetes-rf/v9/"
    stand_in.controller.ready_after = None

    def another_rollout(obj):  # a second writer, once this rollout's patch has landed
        if obj["spec"]["predictor"]["model"]["storageUri"] == V7:
            obj["spec"]["predictor"]["model"]["storageUri"] = other
            obj["metadata"]["generation"] += 1
            obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1000)

    stand_in.after_get.append(another_rollout)
    with pytest.raises(RolloutFailed, match="NOT rolled back: the spec now says s3://models/diabetes-rf/v9/"):
        deploy.rollout(NAME, NAMESPACE, V7, timeout_s=0.3, api=api, **FAST)
    assert stored(stand_in) == deploy.Served(other, None)
    assert len(stand_in.patches()) == 1


def test_a_conflict_is_read_again_and_retried(cluster):
    stand_in, api = cluster
    bumped = []

    def status_write(obj):  # the controller writes status between our GET and our PATCH, once
        if not bumped:
            bumped.append(obj["metadata"]["resourceVersion"])
            obj["metadata"]["resourceVersion"] = str(int(obj["metadata"]["resourceVersion"]) + 1000)

    stand_in.after_get.append(status_write)
    result = deploy.rollout(NAME, NAMESPACE, V7, timeout_s=10, api=api, **FAST)
    assert [p.status for p in stand_in.patches()] == [409, 200]
    assert stand_in.patches()[0].body["metadata"]["resourceVersion"] == bumped[0]
    assert result.served == stored(stand_in) == deploy.Served(V7, None)


def test_endless_conflicts_give_up_without_changing_anything(cluster):
    stand_in, api = cluster
    stand_in.after_get.append(
        lambda obj: obj["metadata"].update(resourceVersion=str(int(obj["metadata"]["resourceVersion"]) + 1000)))
    with pytest.raises(DeployConflict, match=f"every one of {deploy.MAX_CONFLICTS} patches"):
        deploy.rollout(NAME, NAMESPACE, V7, timeout_s=10, api=api, **FAST)
    assert [p.status for p in stand_in.patches()] == [409] * deploy.MAX_CONFLICTS
    assert stored(stand_in) == deploy.Served(PRODUCTION, None)


def test_already_serving_the_version_patches_nothing(cluster):
    stand_in, api = cluster
    deploy.rollout(NAME, NAMESPACE, V7, timeout_s=10, api=api, **FAST)
    result = deploy.rollout(NAME, NAMESPACE, V7, timeout_s=10, api=api, **FAST)
    assert not result.changed and len(stand_in.patches()) == 1


def test_missing_inference_service_is_a_clear_error(cluster):
    stand_in, api = cluster
    with pytest.raises(DeployNotFound, match=f"InferenceService {NAMESPACE}/other not found .*create it first"):
        deploy.rollout("other", NAMESPACE, V7, timeout_s=1, api=api, **FAST)
    assert stand_in.patches() == []


@pytest.mark.parametrize("verb", ["get", "patch"])
def test_forbidden_names_the_role_to_bind(cluster, verb):
    stand_in, api = cluster
    stand_in.forbidden.add(verb)
    with pytest.raises(DeployForbidden) as refused:
        deploy.rollout(NAME, NAMESPACE, V7, timeout_s=1, api=api, **FAST)
    message = str(refused.value)
    assert f"refused to {verb} InferenceService {NAMESPACE}/{NAME} (HTTP 403" in message
    assert f"Role {deploy.ROLE_NAME} (get, patch on inferenceservices.serving.kserve.io)" in message
    assert "system:serviceaccount:kubeflow:pipeline-runner" in message  # the API server's own words
    assert stored(stand_in) == deploy.Served(PRODUCTION, None)


def test_a_wrong_token_is_refused(cluster, tmp_path):
    stand_in, _ = cluster
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(str(stand_in.kubeconfig(tmp_path, token="wrong")), client_configuration=configuration)
    with pytest.raises(DeployForbidden, match="HTTP 401"):
        deploy.rollout(NAME, NAMESPACE, V7, timeout_s=1, api=client.CustomObjectsApi(client.ApiClient(configuration)))


def test_nothing_listening_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    port = free_port()
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    with pytest.raises(DeployError, match=f"Kubernetes API at http://127.0.0.1:{port} did not answer"):
        deploy.rollout(NAME, NAMESPACE, V7, timeout_s=1, api=deploy.kubernetes_api())


def test_no_credentials_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(DeployConfigError, match="no Kubernetes credentials"):
        deploy.kubernetes_api()


def test_another_models_version_is_refused_unless_allowed(cluster):
    stand_in, api = cluster
    other = "s3://models/iris-clf/v1/"
    with pytest.raises(DeployConfigError, match=f"serves {PRODUCTION}, which is not under s3://models/iris-clf/"):
        deploy.rollout(NAME, NAMESPACE, other, timeout_s=1, api=api, **FAST)
    assert stand_in.patches() == []
    result = deploy.rollout(NAME, NAMESPACE, other, timeout_s=10, api=api, allow_other_model=True, **FAST)
    assert result.served == stored(stand_in) == deploy.Served(other, None)


BAD_INPUTS = [
    ({"name": "Diabetes_RF"}, "isvc='Diabetes_RF' is invalid"),
    ({"namespace": ""}, "namespace='' is invalid"),
    ({"storage_uri": "s3://models/diabetes-rf/v7"}, "with the trailing slash"),
    ({"storage_uri": PRODUCTION}, "expected an immutable version folder"),
    ({"storage_uri": "s3://models/diabetes-rf/v0/"}, "storage_uri='s3://models/diabetes-rf/v0/' is invalid"),
    ({"canary_percent": 101}, "canary_percent=101 is invalid: expected an integer from 0 to 100"),
    ({"canary_percent": True}, "canary_percent=True is invalid"),
    ({"timeout_s": 0}, "timeout_s=0 is invalid"),
]


@pytest.mark.parametrize(("change", "expected"), BAD_INPUTS, ids=[e for _, e in BAD_INPUTS])
def test_bad_input_is_refused_before_any_call(change, expected):
    arguments = {"name": NAME, "namespace": NAMESPACE, "storage_uri": V7, "canary_percent": None, "timeout_s": 5}
    arguments.update(change)
    with pytest.raises(DeployConfigError) as refused:
        deploy.rollout(**arguments, api=object())  # any call on it would fail with AttributeError
    assert expected in str(refused.value)


def test_rolled_out_ignores_a_stale_ready():
    obj = settled(base_isvc(), Serverless())
    before = deploy.marks(obj)
    assert deploy.is_ready(obj) and not deploy.rolled_out(obj, before, 2)  # still the old revision
    newer = copy.deepcopy(obj)
    newer["status"]["components"]["predictor"]["latestCreatedRevision"] = f"{NAME}-predictor-00002"
    assert not deploy.rolled_out(newer, before, 2)  # created, not ready
    newer["status"]["components"]["predictor"]["latestReadyRevision"] = f"{NAME}-predictor-00002"
    assert deploy.rolled_out(newer, before, 2)


# ---- the command line (make deploy) ------------------------------------------------------------

def _cli(kubeconfig, *args) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "KUBECONFIG": str(kubeconfig), "HOME": str(kubeconfig.parent)}
    return subprocess.run([sys.executable, "-m", "components.deploy", *args], capture_output=True, text=True,
                          env=env, cwd=REPO_ROOT, timeout=60, check=False)


@pytest.mark.integration
def test_cli_rolls_out_a_version_and_exits_non_zero_after_a_rollback(cluster, tmp_path):
    stand_in, _ = cluster
    kubeconfig = stand_in.kubeconfig(tmp_path)
    done = _cli(kubeconfig, "--version", "7", "--canary-percent", "10", "--timeout-s", "20")
    assert done.returncode == cli.EXIT_OK, done.stderr
    assert f"{NAMESPACE}/{NAME}: Ready, serving {V7} with canaryTrafficPercent=10 (was {PRODUCTION})" in done.stdout
    stand_in.controller.ready_after = None
    failed = _cli(kubeconfig, "--version", "8", "--timeout-s", "1")
    assert failed.returncode == cli.EXIT_FAILED
    assert "did not become Ready with s3://models/diabetes-rf/v8/" in failed.stderr
    assert f"rolled back: the spec says {V7} with canaryTrafficPercent=10 again" in failed.stderr
    assert stored(stand_in) == deploy.Served(V7, 10)
    bad = _cli(kubeconfig, "--version", "0")
    assert bad.returncode == cli.EXIT_BAD_INPUT and "version=0 is invalid" in bad.stderr
