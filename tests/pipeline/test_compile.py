"""The committed pipeline YAML is a fresh compile, and it says what the cluster needs."""

from __future__ import annotations

import yaml

from components.kfp_components import PIPELINE_IMAGE
from pipelines.training_pipeline import MINIO_SECRET, PACKAGE_PATH, compile_pipeline


def load(path):
    spec, platform = yaml.safe_load_all(path.read_text())
    return spec, platform


def test_committed_yaml_matches_a_fresh_compile(tmp_path):
    fresh = compile_pipeline(tmp_path / "fresh.yaml")
    assert PACKAGE_PATH.read_text() == fresh.read_text(), "run `make compile` and commit the YAML"


def test_every_step_runs_in_the_project_image():
    spec, _ = load(PACKAGE_PATH)
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {PIPELINE_IMAGE}
    assert len(executors) == 5


def test_push_runs_only_when_evaluate_says_deploy():
    spec, _ = load(PACKAGE_PATH)
    branches = spec["components"]["comp-condition-branches-1"]["dag"]["tasks"]
    conditions = {name: task["triggerPolicy"]["condition"] for name, task in branches.items()}
    deploy = conditions["condition-2"]
    assert "pipelinechannel--evaluate-deploy" in deploy and deploy.endswith("== true")
    assert "!(" in conditions["condition-3"]  # the else branch
    assert set(spec["components"]["comp-condition-2"]["dag"]["tasks"]) == {"push"}
    assert set(spec["components"]["comp-condition-3"]["dag"]["tasks"]) == {"not-deployed"}


def test_bucket_steps_get_the_secret_named_by_the_minio_secret_parameter():
    spec, platform = load(PACKAGE_PATH)
    assert spec["root"]["inputDefinitions"]["parameters"]["minio_secret"]["defaultValue"] == MINIO_SECRET
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(executors) == {"exec-ingest", "exec-evaluate", "exec-push"}
    optional = {}
    for name, config in executors.items():
        (secret,) = config["secretAsEnv"]
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
    tasks = dict(spec["root"]["dag"]["tasks"])
    for component in ("comp-condition-2", "comp-condition-3"):
        tasks.update(spec["components"][component]["dag"]["tasks"])
    uncached = {name for name, task in tasks.items() if not task.get("cachingOptions", {}).get("enableCache")}
    assert {"ingest", "evaluate", "push", "not-deployed"} <= uncached
    assert "train" not in uncached


def test_parameters_are_typed_and_documented():
    spec, _ = load(PACKAGE_PATH)
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["threshold"]["parameterType"] == "NUMBER_DOUBLE"
    assert parameters["seed"]["parameterType"] == "NUMBER_INTEGER"
    assert parameters["minio_secure"]["parameterType"] == "BOOLEAN"
    assert all(p.get("description") for p in parameters.values())
