"""The KFP `deploy` component, run by kfp.local's SubprocessRunner (a real step process, as in a
pipeline run) against the Kubernetes API stand-in: it reads the kubeconfig the step inherits."""

from __future__ import annotations

import pytest
from kfp import local

from components import deploy as rollout
from components.kfp_components import deploy

from .kubeapi import KubeApiStandIn, Serverless, settled
from .test_rollout import NAME, NAMESPACE, PRODUCTION, V7, base_isvc

# kfp.local runs the step in this interpreter whatever the image is, and warns so.
pytestmark = [pytest.mark.integration, pytest.mark.filterwarnings("ignore:.*non-Python base image:RuntimeWarning")]


@pytest.fixture
def step_cluster(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with KubeApiStandIn(controller=Serverless(ready_after=1)) as stand_in:
        stand_in.add(settled(base_isvc(), stand_in.controller))
        monkeypatch.setenv("KUBECONFIG", str(stand_in.kubeconfig(tmp_path)))  # the step process inherits it
        yield stand_in


def _init(tmp_path, raise_on_error: bool) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "runs"),
               raise_on_error=raise_on_error)


def test_component_rolls_out_and_reports_what_it_replaced(step_cluster, tmp_path):
    _init(tmp_path, raise_on_error=True)
    task = deploy(model_uri=V7, isvc=NAME, namespace=NAMESPACE, canary_traffic_percent=-1, timeout_s=30)
    assert task.outputs["storage_uri"] == V7 and task.outputs["previous_uri"] == PRODUCTION
    assert task.outputs["revision"] == f"{NAME}-predictor-00002"
    assert rollout.served(step_cluster.get(NAMESPACE, NAME)) == rollout.Served(V7, None)  # -1: canary left alone


def test_component_fails_the_step_after_rolling_back(step_cluster, tmp_path, capfd):
    step_cluster.controller.ready_after = None
    _init(tmp_path, raise_on_error=False)
    task = deploy(model_uri=V7, isvc=NAME, namespace=NAMESPACE, canary_traffic_percent=20, timeout_s=1)
    assert task.outputs == {}  # a failed step has no outputs
    logs = capfd.readouterr()
    assert "RolloutFailed" in logs.out + logs.err and "rolled back" in logs.out + logs.err
    assert rollout.served(step_cluster.get(NAMESPACE, NAME)) == rollout.Served(PRODUCTION, None)
    assert [p.status for p in step_cluster.patches()] == [200, 200]
