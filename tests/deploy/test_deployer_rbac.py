"""The deploy step's RBAC (manifests/components/deployer, the chart's deployer.*): the Role grants
exactly the verbs components/deploy.py uses, read off the requests of rollouts through every path
(rolled out, rolled back, conflict, nothing to change) against the Kubernetes API stand-in, and a
rollout and its rollback go through under the rendered Role alone."""

from __future__ import annotations

import pytest

from components import deploy
from components.errors import DeployForbidden, RolloutFailed

from . import render
from .conftest import ALL_RENDERS, RENDER_IDS
from .kubeapi import KubeApiStandIn, Serverless, request_verb, settled
from .test_rollout import FAST, NAME, NAMESPACE, V7, base_isvc, cluster  # noqa: F401 (cluster: a fixture)

V8 = "s3://models/diabetes-rf/v8/"
PIPELINE_RUNNER = {"kind": "ServiceAccount", "name": "pipeline-runner", "namespace": "kubeflow"}


def every_rollout_path(stand_in, api) -> None:
    """Rolled out; already serving (no patch); a 409 then a retry; not Ready, so rolled back."""
    deploy.rollout(NAME, NAMESPACE, V7, canary_percent=10, timeout_s=10, api=api, **FAST)
    deploy.rollout(NAME, NAMESPACE, V7, canary_percent=10, timeout_s=10, api=api, **FAST)

    bumped: list[str] = []

    def bump_once(obj: dict) -> None:  # another writer, between this rollout's GET and PATCH
        if not bumped:
            bumped.append(stand_in._next_rv())
            obj["metadata"]["resourceVersion"] = bumped[0]
    stand_in.after_get.append(bump_once)
    deploy.rollout(NAME, NAMESPACE, V8, timeout_s=10, api=api, **FAST)
    stand_in.after_get.clear()
    stand_in.controller.ready_after = None
    with pytest.raises(RolloutFailed, match="rolled back"):
        deploy.rollout(NAME, NAMESPACE, "s3://models/diabetes-rf/v9/", timeout_s=0.3, api=api, **FAST)


@pytest.fixture(scope="module")
def verbs_used(tmp_path_factory) -> set[str]:
    """The RBAC verbs of every request deploy.py made on every path, as the API server classifies them."""
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    try:
        with KubeApiStandIn(controller=Serverless()) as stand_in:
            stand_in.add(settled(base_isvc(), stand_in.controller))
            monkeypatch.setenv("KUBECONFIG", str(stand_in.kubeconfig(tmp_path_factory.mktemp("rbac"))))
            every_rollout_path(stand_in, deploy.kubernetes_api())
            assert {r.status for r in stand_in.requests} == {200, 409}  # every path was taken, none refused
            return {request_verb(r.method, r.path) for r in stand_in.requests}
    finally:
        monkeypatch.undo()


def test_the_rollout_uses_get_and_patch_only(verbs_used):
    # Polling is by GET, not a watch; nothing is listed, created or deleted.
    assert verbs_used == {"get", "patch"}


@pytest.mark.parametrize(("source", "name"), ALL_RENDERS, ids=RENDER_IDS)
def test_every_render_ships_a_role_with_exactly_those_verbs_on_the_one_inference_service(rendered, source, name,
                                                                                          verbs_used):
    docs = rendered(source, name)
    isvc = render.only(docs, "InferenceService")
    role = render.only(docs, "Role", deploy.ROLE_NAME)  # the name deploy.py gives in its 403 advice
    assert role["metadata"]["namespace"] == isvc["metadata"]["namespace"] == render.NAMESPACE
    (rule,) = role["rules"]
    assert rule["apiGroups"] == [deploy.GROUP] and rule["resources"] == [deploy.PLURAL]
    assert set(rule["verbs"]) == verbs_used and len(rule["verbs"]) == len(verbs_used)
    assert rule["resourceNames"] == [isvc["metadata"]["name"]]

    binding = render.only(docs, "RoleBinding", deploy.ROLE_NAME)
    assert binding["metadata"]["namespace"] == render.NAMESPACE
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": deploy.ROLE_NAME}
    own = {"kind": "ServiceAccount", "name": "model-deployer", "namespace": render.NAMESPACE}
    assert binding["subjects"] == [own, PIPELINE_RUNNER]
    account = render.only(docs, "ServiceAccount", "model-deployer")
    assert account["automountServiceAccountToken"] is True  # it calls the API, unlike model-reader
    # The predictor's own account stays without API access.
    predictor = render.only(docs, "ServiceAccount", isvc["spec"]["predictor"]["serviceAccountName"])
    assert predictor["automountServiceAccountToken"] is False


@pytest.mark.parametrize(("source", "name"), [("kustomize", "serverless"), ("helm", "default")])
def test_a_rollout_and_its_rollback_pass_under_the_rendered_role_alone(rendered, cluster, source, name):
    stand_in, api = cluster
    stand_in.role = render.only(rendered(source, name), "Role", deploy.ROLE_NAME)
    every_rollout_path(stand_in, api)
    assert 403 not in {r.status for r in stand_in.requests}
    assert deploy.served(stand_in.get(NAMESPACE, NAME)) == deploy.Served(V8, 10)  # rolled back to v8


@pytest.mark.parametrize("verbs, refused", [(["get"], "patch"), (["patch"], "get")])
def test_a_role_missing_a_verb_fails_the_rollout_naming_the_role(rendered, cluster, verbs, refused):
    stand_in, api = cluster
    role = render.only(rendered("kustomize", "serverless"), "Role", deploy.ROLE_NAME)
    role["rules"][0]["verbs"] = verbs
    stand_in.role = role
    with pytest.raises(DeployForbidden, match=f"refused to {refused} .*needs the Role {deploy.ROLE_NAME}"):
        deploy.rollout(NAME, NAMESPACE, V7, timeout_s=1, api=api, **FAST)
    assert deploy.served(stand_in.get(NAMESPACE, NAME)).storage_uri != V7


def test_the_role_is_limited_to_its_inference_service(rendered, cluster):
    stand_in, api = cluster
    other = base_isvc()
    other["metadata"]["name"] = "other-model"
    stand_in.add(other)  # it exists: the refusal is RBAC's, not a 404
    stand_in.role = render.only(rendered("helm", "default"), "Role", deploy.ROLE_NAME)
    with pytest.raises(DeployForbidden, match="refused to get InferenceService .*/other-model"):
        deploy.rollout("other-model", NAMESPACE, V7, timeout_s=1, api=api, **FAST)


def test_chart_deployer_values(helm):
    off = render.helm_template(helm, ("deployer.enabled=false",))
    assert not render.find(off, "Role") and not render.find(off, "RoleBinding")
    assert not render.find(off, "ServiceAccount", "model-deployer")

    docs = render.helm_template(helm, ("model.name=iris-clf", "deployer.serviceAccountName=ci-deployer",
                                       "deployer.boundServiceAccounts[0].name=default-editor",
                                       "deployer.boundServiceAccounts[0].namespace=team-a"))
    assert render.only(docs, "Role")["rules"][0]["resourceNames"] == ["iris-clf"]
    assert render.only(docs, "RoleBinding")["subjects"] == [
        {"kind": "ServiceAccount", "name": "ci-deployer", "namespace": render.NAMESPACE},
        {"kind": "ServiceAccount", "name": "default-editor", "namespace": "team-a"}]
    assert render.only(docs, "ServiceAccount", "ci-deployer")["automountServiceAccountToken"] is True
