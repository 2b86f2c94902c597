"""Evaluate: metrics equal sklearn's, the report, production lookup (the gate itself: test_gate.py)."""

from __future__ import annotations

import json
import math

import joblib
import pytest
from sklearn import metrics as skm

from components import evaluate
from components.datasets import read_dataset
from components.errors import EvaluateError, PipelineError, PushError

from .memstore import MemStore, seed_pointer, seed_version

def production(value: float, task: str = "regression", metric: str = "r2", version: int = 3) -> dict:
    return {"task": task, "version": version, "primary_metric": {"name": metric, "value": value}}


def run_evaluate(ingested, model_dir, tmp_path, store=None, threshold=0.2, model_name="m", bucket="models"):
    return evaluate.run(test_path=ingested.test, schema_path=ingested.schema, model_dir=model_dir,
                        threshold=threshold, model_name=model_name, bucket=bucket, store=store,
                        data_source=ingested.source, seed=ingested.config.seed,
                        test_fraction=ingested.config.test_fraction, evaluation_path=tmp_path / "evaluation.json",
                        report_path=tmp_path / "report.md")


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
    assert set(result["metrics"]) == {"accuracy", "f1_macro", "roc_auc"}  # no baseline without train_path
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


def test_compares_with_the_version_production_json_names(diabetes, diabetes_rf, tmp_path):
    store = MemStore()
    better = {**production(0.99, version=4), "data_source": "sklearn:diabetes", "split": {"seed": 42,
                                                                                          "test_fraction": 0.2}}
    seed_version(store, "models", "m", 4, better)
    seed_pointer(store, "models", "m", 4)
    # A stale production/ copy says otherwise: the pointer is what counts, and the report says the copy lags.
    store.put_bytes("models", "m/production/metadata.json", json.dumps(production(0.01, version=1)).encode())
    result = run_evaluate(diabetes, diabetes_rf, tmp_path, store=store, bucket="models")
    assert not result["deploy"] and "worse than production v4 (0.9900)" in result["reason"]
    assert result["production"]["same_split"] is True
    assert result["production"]["uri"] == "s3://models/m/production/"
    assert result["production"]["copy_consistent"] is False
    assert "does not hold v4" in result["production"]["copy_state"] or "missing files of v4" in \
        result["production"]["copy_state"]


@pytest.mark.parametrize(
    "stored, expected",
    [
        (b'[{"version": 1}]', "names v2, whose metadata.json is not a JSON object"),
        (b"{not json", "names v2, whose metadata.json is not a JSON object"),
        ({"task": "regression", "primary_metric": "r2"},
         "production/metadata.json: primary_metric is 'r2'; expected an object"),
    ],
)
def test_malformed_production_metadata_is_an_error_naming_its_uri(diabetes, diabetes_rf, tmp_path, stored, expected):
    store = MemStore()
    seed_version(store, "models", "m", 2, stored)
    seed_pointer(store, "models", "m", 2)
    with pytest.raises(PipelineError) as caught:
        run_evaluate(diabetes, diabetes_rf, tmp_path, store=store, bucket="models")
    assert "s3://models/m/production" in str(caught.value) and expected in str(caught.value)
    assert not (tmp_path / "evaluation.json").exists()  # no half-made decision for push to act on
