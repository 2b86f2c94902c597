"""Model selection: k-fold CV per candidate on the training split, the pick, and its place in the pipeline."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

from components import candidates, selection
from components.selection import SelectionError
from pipelines.training_pipeline import PACKAGE_PATH

REGRESSION_SCHEMA = {"features": [{"name": f"x{i}"} for i in range(3)], "target": {"name": "y", "type": "continuous"}}


def made_data(kind: str, rows: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Data one candidate is built to win: a plane (linear) or a staircase (trees)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3, 3, size=(rows, 3))
    if kind == "linear":
        y = 4 * x[:, 0] - 2 * x[:, 1] + 0.05 * rng.normal(size=rows)
    else:
        y = 10.0 * (x[:, 0] > 0) + 5.0 * (x[:, 1] > 1) + 0.05 * rng.normal(size=rows)
    return x, y


PAIR = [{"index": 0, "estimator": "ridge", "hyperparameters": {}},
        {"index": 1, "estimator": "random_forest", "hyperparameters": {"n_estimators": 30}}]


@pytest.mark.parametrize("kind, expected", [("linear", "ridge"), ("staircase", "random_forest")])
def test_selection_picks_the_candidate_the_data_was_made_for(kind, expected):
    x, y = made_data(kind)
    results = [selection.cross_validate(REGRESSION_SCHEMA, x, y, c, seed=1, k=4) for c in PAIR]
    picked = selection.select(results)
    assert picked["winner"]["estimator"] == expected
    loser = next(r for r in results if r["estimator"] != expected)
    assert picked["winner"]["mean"] > loser["mean"] + selection.TIE_TOLERANCE  # a clear win, not a tie
    assert all(len(r["scores"]) == 4 and r["fit_seconds"] > 0 and r["predict_us_per_row"] > 0 for r in results)


def test_cross_validation_reads_only_the_training_split(tmp_path):
    # The staircase in the training split, a plane in the "test" rows: scoring on those would pick ridge.
    x_train, y_train = made_data("staircase", seed=1)
    x_test, y_test = made_data("linear", seed=2)
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(REGRESSION_SCHEMA))
    train_csv = tmp_path / "train.csv"
    header = "x0,x1,x2,y\n"
    train_csv.write_text(header + "".join(",".join(map(str, [*r, t])) + "\n" for r, t in zip(x_train, y_train)))
    results = [selection.run(train_path=train_csv, schema_path=schema, candidate=c, seed=1, k=4) for c in PAIR]
    assert selection.select(results)["winner"]["estimator"] == "random_forest"
    on_test = [selection.cross_validate(REGRESSION_SCHEMA, x_test, y_test, c, seed=1, k=4) for c in PAIR]
    assert selection.select(on_test)["winner"]["estimator"] == "ridge"  # what peeking at the test rows would pick
    assert all(r["rows"] == len(y_train) for r in results)


def test_the_pipeline_gives_selection_no_test_split():
    spec = yaml.safe_load_all(PACKAGE_PATH.read_text()).__next__()
    loop = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]["cross-validate"]
    assert set(loop["inputs"]["artifacts"]) == {"train_data", "schema"}
    root = spec["root"]["dag"]["tasks"]
    for task in ("plan-candidates", "train"):
        artifacts = root[task]["inputs"].get("artifacts", {})
        assert all(a["taskOutputArtifact"]["outputArtifactKey"] != "test_data" for a in artifacts.values()), task
    assert root["evaluate"]["inputs"]["artifacts"]["test_data"]["taskOutputArtifact"]["outputArtifactKey"] == \
        "test_data"


def test_compiled_yaml_fans_out_with_parallelfor_and_gathers_the_results():
    spec = yaml.safe_load_all(PACKAGE_PATH.read_text()).__next__()
    root = spec["root"]["dag"]["tasks"]
    loop = root["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--plan-candidates-Output"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 4
    gathered = root["train"]["inputs"]["parameters"]["cv_results"]["taskOutputParameter"]
    assert gathered == {"producerTask": "for-loop-1", "outputParameterKey": "pipelinechannel--cross-validate-Output"}
    assert spec["components"]["comp-for-loop-1"]["outputDefinitions"]["parameters"][
        "pipelinechannel--cross-validate-Output"]["parameterType"] == "LIST"


def test_every_candidate_logs_its_cv_scores_as_a_metrics_artifact_the_ui_shows():
    # The Kubeflow UI lists a task's system.Metrics outputs: one cross-validate task per candidate.
    spec = yaml.safe_load_all(PACKAGE_PATH.read_text()).__next__()
    outputs = spec["components"]["comp-cross-validate"]["outputDefinitions"]["artifacts"]
    assert outputs["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    loop = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert loop["cross-validate"]["componentRef"]["name"] == "comp-cross-validate"


def test_a_failing_candidate_is_reported_and_the_others_still_run():
    x, y = made_data("linear")
    plan = [*PAIR, {"index": 2, "estimator": "ridge", "hyperparameters": {"alpha": -1}},
            {"index": 3, "estimator": "logistic_regression", "hyperparameters": {}}]
    results = [selection.cross_validate(REGRESSION_SCHEMA, x, y, c, seed=1, k=3) for c in plan]
    assert [r["status"] for r in results] == ["ok", "ok", "failed", "failed"]
    assert "bad hyperparameter for ridge" in results[2]["error"] and "alpha" in results[2]["error"]
    assert "not available for regression" in results[3]["error"]
    picked = selection.select(results)
    assert picked["winner"]["estimator"] == "ridge" and "2 of 4 candidates failed" in picked["reason"]
    shown = selection.table(picked)
    assert re.search(r"^x ridge alpha=-1 +FAILED: bad hyperparameter for ridge", shown, re.M)
    assert re.search(r"^\* ridge +0\.99", shown, re.M)


def test_a_fit_that_raises_is_a_failed_candidate_not_a_crash():
    x, y = made_data("linear")
    y[:50] = np.nan  # the estimator itself raises inside fit()
    result = selection.cross_validate(REGRESSION_SCHEMA, x, y, PAIR[0], seed=1, k=3)
    assert result["status"] == "failed" and "NaN" in result["error"]


def test_when_every_candidate_fails_the_error_lists_them_all():
    x, y = made_data("linear")
    bad = [{"index": 0, "estimator": "svm", "hyperparameters": {}},
           {"index": 1, "estimator": "ridge", "hyperparameters": {"alpha": "big"}}]
    results = [selection.cross_validate(REGRESSION_SCHEMA, x, y, c, seed=1, k=3) for c in bad]
    with pytest.raises(SelectionError) as caught:
        selection.select(results)
    message = str(caught.value)
    assert message.startswith("all 2 candidates failed: ")
    assert "svm: estimator 'svm' is not available for regression" in message
    assert "ridge alpha=big: bad hyperparameter for ridge" in message


def _result(index: int, estimator: str, mean: float, predict_us: float) -> dict:
    return {"index": index, "estimator": estimator, "hyperparameters": {}, "label": estimator, "metric": "r2",
            "folds": 5, "status": "ok", "error": None, "mean": mean, "std": 0.01, "fit_seconds": 0.1,
            "predict_us_per_row": predict_us}


def test_a_tie_goes_to_the_cheaper_model_to_serve_and_says_so():
    tied = [_result(0, "random_forest", 0.8004, 400.0), _result(1, "ridge", 0.8000, 5.0),
            _result(2, "kernel_ridge", 0.70, 1.0)]
    picked = selection.select(tied)
    assert picked["winner"]["estimator"] == "ridge"
    assert "tied within 0.001 with random_forest: chose the cheaper to serve (5.0 µs per row" in picked["reason"]
    clear = selection.select([_result(0, "random_forest", 0.85, 400.0), _result(1, "ridge", 0.80, 5.0)])
    assert clear["winner"]["estimator"] == "random_forest" and "tied" not in clear["reason"]


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_defaults_per_task_hold_linear_kernel_forest_and_boosting(task):
    plan = [json.loads(item) for item in candidates.plan(task, "", "", "{}")]
    assert [c["index"] for c in plan] == [0, 1, 2, 3]
    kinds = {"regression": ["ridge", "kernel_ridge", "random_forest", "hist_gradient_boosting"],
             "classification": ["logistic_regression", "svc", "random_forest", "hist_gradient_boosting"]}
    assert [c["estimator"] for c in plan] == kinds[task]


def test_the_single_estimator_parameters_are_a_list_of_one():
    plan = [json.loads(item) for item in candidates.plan("regression", "", "ridge", '{"alpha": 3}')]
    assert plan == [{"index": 0, "estimator": "ridge", "hyperparameters": {"alpha": 3}}]


def test_integers_survive_the_plan_as_integers():
    # KFP turns integers inside a dict loop item into floats; the plan's items are JSON strings for that reason.
    item = candidates.plan("regression", '[{"estimator": "random_forest", "hyperparameters": {"n_estimators": 7}}]',
                           "", "{}")[0]
    assert isinstance(item, str) and json.loads(item)["hyperparameters"]["n_estimators"] == 7


def test_kfp_cross_validate_component_logs_metrics_and_returns_failures(diabetes, tmp_path):
    from kfp.dsl import Artifact, Dataset, Metrics

    from components import kfp_components

    def call(candidate: dict) -> tuple[dict, Metrics]:
        metrics = Metrics(uri=str(tmp_path / "metrics"))
        out = kfp_components.cross_validate.python_func(
            train_data=Dataset(uri=str(diabetes.train)), schema=Artifact(uri=str(diabetes.schema)),
            candidate=json.dumps(candidate), seed=42, cv_folds=3, metrics=metrics)
        return json.loads(out), metrics

    ok, metrics = call({"index": 0, "estimator": "ridge", "hyperparameters": {"alpha": 1.0}})
    assert ok["status"] == "ok" and metrics.metadata["cv_r2_mean"] == ok["mean"]
    assert set(metrics.metadata) == {"failed", "cv_r2_mean", "cv_r2_std", "fit_seconds", "predict_us_per_row"}
    assert metrics.metadata["failed"] == 0.0
    failed, metrics = call({"index": 1, "estimator": "svm", "hyperparameters": {}})
    assert failed["status"] == "failed" and "estimator 'svm' is not available" in failed["error"]
    assert metrics.metadata == {"failed": 1.0}
