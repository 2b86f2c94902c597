"""The committed pipeline YAML is a fresh compile, and it says what the cluster needs."""

from __future__ import annotations

import re

import yaml

from components.kfp_components import PIPELINE_IMAGE
from pipelines.training_pipeline import MINIO_SECRET, PACKAGE_PATH, compile_pipeline


def load(path):
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform


def all_tasks(spec) -> dict:
    """Every task of the pipeline, those inside dsl.If/Else branches included, by name."""
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in spec["components"].values():
        tasks.update(component.get("dag", {}).get("tasks", {}))
    return tasks


def branch_of(spec, task: str) -> tuple[str, str]:
    """(condition of the branch that holds task, name of that branch) - KFP numbers branches in order."""
    for component_name, component in spec["components"].items():
        if task in component.get("dag", {}).get("tasks", {}):
            branch = component_name.removeprefix("comp-")
            parent = next(t for t in all_tasks(spec).values() if t.get("componentRef", {}).get("name") == component_name)
            return parent["triggerPolicy"]["condition"], branch
    raise AssertionError(f"no branch holds {task}")


def test_committed_yaml_matches_a_fresh_compile(tmp_path):
    fresh = compile_pipeline(tmp_path / "fresh.yaml")
    assert PACKAGE_PATH.read_text() == fresh.read_text(), "run `make compile` and commit the YAML"


def test_every_step_runs_in_the_project_image():
    spec, _ = load(PACKAGE_PATH)
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {PIPELINE_IMAGE}
    assert len(executors) == 8


def test_no_step_reinstalls_kfp_before_it_runs():
    # The image (and make run's venv) has kfp pinned: KFP's default `pip install kfp==...` in front of
    # each step changes nothing and cost 0.7 CPU s per step on kfp.local (bench/pipeline_bench.py).
    spec, _ = load(PACKAGE_PATH)
    executors = spec["deploymentSpec"]["executors"]
    assert {"exec-ingest", "exec-cross-validate", "exec-train", "exec-evaluate", "exec-push"} <= set(executors)
    for name, executor in executors.items():
        command = " ".join(executor["container"]["command"])
        assert "pip install" not in command, f"{name} runs pip install before its step"
        assert "kfp.dsl.executor_main" in command, f"{name} is not a lightweight Python component"


def test_push_runs_only_when_evaluate_says_deploy():
    spec, _ = load(PACKAGE_PATH)
    push_condition, push_branch = branch_of(spec, "push")
    assert "pipelinechannel--evaluate-deploy" in push_condition and push_condition.endswith("== true")
    else_condition, else_branch = branch_of(spec, "not-deployed")
    assert else_condition == f"!({push_condition})"  # the else branch
    assert set(spec["components"][f"comp-{else_branch}"]["dag"]["tasks"]) == {"not-deployed"}


def test_deploy_runs_only_after_a_promotion_and_when_an_inference_service_is_named():
    spec, _ = load(PACKAGE_PATH)
    promoted_condition, promoted_branch = branch_of(spec, "deploy")
    assert promoted_condition == "inputs.parameter_values['pipelinechannel--push-promoted'] == true"
    deploy_condition, deploy_branch = branch_of(spec, promoted_branch)
    assert deploy_condition == "inputs.parameter_values['pipelinechannel--deploy_isvc'] != ''"
    assert branch_of(spec, deploy_branch)[1] == branch_of(spec, "push")[1]  # inside push's branch
    inputs = all_tasks(spec)["deploy"]["inputs"]["parameters"]
    # Inside branches, KFP passes push's output and the pipeline parameters down as channels.
    assert {name: p["componentInputParameter"] for name, p in inputs.items()} == {
        "model_uri": "pipelinechannel--push-model_uri", "isvc": "pipelinechannel--deploy_isvc", "namespace": "pipelinechannel--deploy_namespace",
        "canary_traffic_percent": "pipelinechannel--deploy_canary_percent",
        "timeout_s": "pipelinechannel--deploy_timeout_s"}
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert {name: parameters[name]["defaultValue"] for name in parameters if name.startswith("deploy_")} == {
        "deploy_isvc": "diabetes-rf", "deploy_namespace": "sklearn-kserve-mlops", "deploy_canary_percent": -1.0,
        "deploy_timeout_s": 300.0}


def test_bucket_steps_get_the_secret_named_by_the_minio_secret_parameter():
    spec, platform = load(PACKAGE_PATH)
    assert spec["root"]["inputDefinitions"]["parameters"]["minio_secret"]["defaultValue"] == MINIO_SECRET
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-ingest", "exec-evaluate", "exec-push"}
    optional = {}
    for name, config in executors.items():
        secret = next(s for s in config["secretAsEnv"] if "MINIO_ACCESS_KEY" in str(s["keyToEnv"]))
        assert "secretName" not in secret  # a fixed name would ignore the parameter
        # push runs inside the dsl.If branch, which receives the parameter as a pipeline channel.
        assert secret["secretNameParameter"]["componentInputParameter"].endswith("minio_secret")
        assert {k["secretKey"]: k["envVar"] for k in secret["keyToEnv"]} == {
            "accesskey": "MINIO_ACCESS_KEY", "secretkey": "MINIO_SECRET_KEY"}
        optional[name] = secret["optional"]
    # ingest reads sklearn:/http(s) sources without keys; the steps that use the bucket need them.
    assert optional == {"exec-ingest": True, "exec-evaluate": False, "exec-push": False}


def test_push_reports_whether_it_moved_production():
    spec, _ = load(PACKAGE_PATH)
    outputs = spec["components"]["comp-push"]["outputDefinitions"]["parameters"]
    assert outputs["promoted"]["parameterType"] == "BOOLEAN" and outputs["reason"]["parameterType"] == "STRING"


def test_steps_that_read_mutable_state_are_never_cached():
    spec, _ = load(PACKAGE_PATH)
    tasks = all_tasks(spec)
    uncached = {name for name, task in tasks.items() if not task.get("cachingOptions", {}).get("enableCache")}
    assert {"ingest", "evaluate", "push", "not-deployed", "deploy"} <= uncached
    assert "train" not in uncached


def test_parameters_are_typed_and_documented():
    spec, _ = load(PACKAGE_PATH)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["threshold"]["parameterType"] == "NUMBER_DOUBLE"
    assert parameters["seed"]["parameterType"] == "NUMBER_INTEGER"
    assert parameters["minio_secure"]["parameterType"] == "BOOLEAN"
    assert all(p.get("description") for p in parameters.values())


def test_only_ingest_gets_the_source_url_secret_and_the_pod_starts_without_it():
    _, platform = load(PACKAGE_PATH)
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    holders = {name: [s for s in config["secretAsEnv"] if "SOURCE_URL" in str(s["keyToEnv"])]
               for name, config in executors.items()}
    assert {name for name, found in holders.items() if found} == {"exec-ingest"}
    (secret,) = holders["exec-ingest"]
    assert secret["keyToEnv"] == [{"envVar": "SOURCE_URL", "secretKey": "url"}] and secret["optional"] is True
    assert secret["secretNameParameter"]["componentInputParameter"] == "source_secret"


def test_every_condition_reads_an_input_of_its_own_dag():
    """kfp.local (2.17) resolves a condition's channel only from the inputs of the DAG it sits in: a
    condition on a sibling task's output evaluates False there, with "Could not resolve parent
    input" warnings (the cluster resolves both). So each condition names a componentInputParameter."""
    spec, _ = load(PACKAGE_PATH)
    dags = {"root": spec["root"], **spec["components"]}
    checked = 0
    for dag_name, component in dags.items():
        for task_name, task in component.get("dag", {}).get("tasks", {}).items():
            condition = task.get("triggerPolicy", {}).get("condition")
            if not condition:
                continue
            inputs = task["inputs"]["parameters"]
            for channel in re.findall(r"parameter_values\['([^']+)'\]", condition):
                assert "componentInputParameter" in inputs[channel], (
                    f"{dag_name}/{task_name}: condition {condition!r} reads {channel}, {inputs[channel]} in its DAG")
                checked += 1
    assert checked >= 4  # deploy, keep-production, rollout, promoted
