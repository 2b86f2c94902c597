"""Evaluate: metrics equal sklearn's, the gate's every branch, the report, production lookup."""

from __future__ import annotations

import json
import math

import joblib
import pytest
from sklearn import metrics as skm

from components import evaluate
from components.datasets import read_dataset
from components.errors import EvaluateError, PushError
from components.evaluate import decide

PROD_URI = "s3://models/m/production/"


def production(value: float, task: str = "regression", metric: str = "r2", version: int = 3) -> dict:
    return {"task": task, "version": version, "primary_metric": {"name": metric, "value": value}}


@pytest.mark.parametrize(
    "value, threshold, prod, deploy, reason",
    [
        (0.40, 0.20, None, True, "r2 0.4000 >= threshold 0.2000; no production model yet"),
        (0.10, 0.20, None, False, "r2 0.1000 is below the threshold 0.2000"),
        (0.10, 0.20, production(0.05), False, "below the threshold"),
        (0.40, 0.20, production(0.45), False, "r2 0.4000 is worse than production v3 (0.4500)"),
        (0.40, 0.20, production(0.40), True, "not worse than production v3 (0.4000)"),
        (0.50, 0.20, production(0.40), True, "not worse than production v3 (0.4000)"),
        (0.50, 0.20, production(0.9, "classification", "f1_macro"), False, "not comparable, use another model_name"),
        (None, 0.20, None, False, "r2 could not be computed"),
    ],
)
def test_gate(value, threshold, prod, deploy, reason):
    decision = decide("r2", value, threshold, "regression", prod, PROD_URI)
    assert decision.deploy is deploy
    assert reason in decision.reason


def test_gate_refuses_to_guess_over_unreadable_production_metadata():
    with pytest.raises(EvaluateError, match=r"s3://models/m/production/metadata.json has no numeric primary_metric"):
        decide("r2", 0.5, 0.2, "regression", {"task": "regression", "primary_metric": {"name": "r2"}}, PROD_URI)


def run_evaluate(ingested, model_dir, tmp_path, store=None, threshold=0.2, model_name="m", bucket="models"):
    return evaluate.run(ingested.test, ingested.schema, model_dir, threshold, model_name, bucket, store,
                        ingested.source, ingested.config.seed, ingested.config.test_fraction,
                        tmp_path / "evaluation.json", tmp_path / "report.md")


def test_regression_metrics_match_sklearn(diabetes, diabetes_rf, tmp_path):
    result = run_evaluate(diabetes, diabetes_rf, tmp_path)
    x, y = read_dataset(diabetes.test, json.loads(diabetes.schema.read_text()))
    predicted = joblib.load(diabetes_rf / "model.joblib").predict(x)
    assert result["metrics"]["r2"] == pytest.approx(skm.r2_score(y, predicted))
    assert result["metrics"]["rmse"] == pytest.approx(math.sqrt(skm.mean_squared_error(y, predicted)))
    assert result["metrics"]["mae"] == pytest.approx(skm.mean_absolute_error(y, predicted))
    assert result["primary_metric"] == {"name": "r2", "value": result["metrics"]["r2"], "higher_is_better": True}
    assert result["deploy"] and result["confusion_matrix"] is None
    assert json.loads((tmp_path / "evaluation.json").read_text()) == result
    report = (tmp_path / "report.md").read_text()
    assert "**Decision: DEPLOY**" in report and f"| r2 | {result['metrics']['r2']:.4f} |" in report


def test_classification_metrics_and_confusion_matrix(breast_cancer, breast_cancer_rf, tmp_path):
    result = run_evaluate(breast_cancer, breast_cancer_rf, tmp_path, threshold=0.8)
    assert set(result["metrics"]) == {"accuracy", "f1_macro", "roc_auc"}
    assert result["metrics"]["roc_auc"] > 0.9 and result["metrics"]["accuracy"] > 0.9
    matrix = result["confusion_matrix"]
    assert matrix["labels"] == [0, 1]
    assert sum(map(sum, matrix["matrix"])) == result["test_rows"] == 114
    correct = matrix["matrix"][0][0] + matrix["matrix"][1][1]
    assert correct / result["test_rows"] == pytest.approx(result["metrics"]["accuracy"])
    assert result["primary_metric"]["name"] == "f1_macro" and result["deploy"]
    assert "Confusion matrix" in (tmp_path / "report.md").read_text()


def test_impossible_threshold_says_no(diabetes, diabetes_rf, tmp_path):
    result = run_evaluate(diabetes, diabetes_rf, tmp_path, threshold=0.99)
    assert not result["deploy"] and "below the threshold 0.9900" in result["reason"]
    assert "**Decision: NOT DEPLOYED**" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("threshold", [float("nan"), "0.2"])
def test_bad_threshold_is_named(diabetes, diabetes_rf, tmp_path, threshold):
    with pytest.raises(EvaluateError, match="threshold="):
        run_evaluate(diabetes, diabetes_rf, tmp_path, threshold=threshold)


def test_bad_location_is_named_before_scoring(diabetes, diabetes_rf, tmp_path):
    with pytest.raises(PushError, match="model_name 'a/b' is invalid"):
        run_evaluate(diabetes, diabetes_rf, tmp_path, model_name="a/b")


def test_missing_model_is_named(diabetes, tmp_path):
    with pytest.raises(EvaluateError, match="model file .*model.joblib not found"):
        run_evaluate(diabetes, tmp_path / "nothing", tmp_path)


@pytest.mark.integration
def test_compares_with_production_metadata_in_the_bucket(diabetes, diabetes_rf, tmp_path, store, bucket):
    store.ensure_bucket(bucket)
    better = {**production(0.99, version=4), "data_source": "sklearn:diabetes", "split": {"seed": 42,
                                                                                          "test_fraction": 0.2}}
    store.put_bytes(bucket, "m/production/metadata.json", json.dumps(better).encode())
    result = run_evaluate(diabetes, diabetes_rf, tmp_path, store=store, bucket=bucket)
    assert not result["deploy"] and "worse than production v4 (0.9900)" in result["reason"]
    assert result["production"]["same_split"] is True
    assert result["production"]["uri"] == f"s3://{bucket}/m/production/"
