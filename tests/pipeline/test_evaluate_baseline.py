"""Evaluate's baseline: a model that ignores its features never deploys, whatever the threshold.

The baseline is a DummyClassifier(most_frequent) / DummyRegressor(mean) fitted on the training
split and scored on the test split; the gate wants the candidate to beat it by
min_gain_over_baseline (the gate's own branches: test_gate.py).
"""

from __future__ import annotations

import joblib
import pytest
from sklearn import datasets
from sklearn.dummy import DummyClassifier, DummyRegressor

from components import evaluate, train
from components.datasets import read_dataset
from components.errors import EvaluateError
from components.artifacts import read_json

from .helpers import run_ingest

DEFAULT_MIN_GAIN = 0.1  # the pipeline's default (pipelines/training_pipeline.py)


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    folder = tmp_path_factory.mktemp("iris")
    datasets.load_iris(as_frame=True).frame.to_csv(folder / "iris.csv", index=False)
    return run_ingest(folder, str(folder / "iris.csv"), task="classification")


def dummy_model(ingested, folder, estimator):
    """A model folder holding a feature-blind estimator fitted on the training split."""
    x, y = read_dataset(ingested.train, read_json(ingested.schema, "schema"))
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator.fit(x, y), folder / "model.joblib")
    return folder


def real_model(ingested, folder, estimator):
    train.run(train_path=ingested.train, schema_path=ingested.schema, model_dir=folder, estimator=estimator,
              hyperparameters="{}", seed=42)
    return folder


def run_evaluate(ingested, model_dir, tmp_path, threshold=0.0, min_gain=DEFAULT_MIN_GAIN, with_train=True):
    return evaluate.run(test_path=ingested.test, schema_path=ingested.schema, model_dir=model_dir,
                        threshold=threshold, model_name="m", bucket="models", store=None,
                        data_source=ingested.source, seed=42, test_fraction=0.2,
                        evaluation_path=tmp_path / "evaluation.json", report_path=tmp_path / "report.md",
                        train_path=ingested.train if with_train else None, min_gain_over_baseline=min_gain)


@pytest.mark.parametrize("dataset", ["breast_cancer", "iris"])
def test_a_constant_classifier_is_refused_even_with_threshold_zero(dataset, breast_cancer, iris, tmp_path):
    ingested = {"breast_cancer": breast_cancer, "iris": iris}[dataset]
    model = dummy_model(ingested, tmp_path / "dummy", DummyClassifier(strategy="most_frequent"))
    result = run_evaluate(ingested, model, tmp_path, threshold=0.0)
    baseline = result["metrics"]["baseline_f1_macro"]
    assert result["metrics"]["f1_macro"] == pytest.approx(baseline)  # the same model as the baseline
    assert not result["deploy"]
    assert result["reason"] == (
        f"f1_macro {result['metrics']['f1_macro']:.4f} does not beat the baseline (always the most frequent class) "
        f"{baseline:.4f} by min_gain_over_baseline 0.1000 (gain +0.0000)")
    assert result["baseline"] == {"strategy": "most_frequent", "value": baseline, "min_gain": DEFAULT_MIN_GAIN}


def test_the_old_default_threshold_alone_let_a_constant_classifier_through(breast_cancer, tmp_path):
    """Why the baseline: macro F1 0.2 is passed by always answering the majority class (about 0.39)."""
    model = dummy_model(breast_cancer, tmp_path / "dummy", DummyClassifier(strategy="most_frequent"))
    without = run_evaluate(breast_cancer, model, tmp_path, threshold=0.2, with_train=False)
    assert without["deploy"] and without["baseline"] is None and "baseline_f1_macro" not in without["metrics"]
    assert 0.35 < without["metrics"]["f1_macro"] < 0.45
    assert not run_evaluate(breast_cancer, model, tmp_path, threshold=0.2)["deploy"]


def test_a_mean_regressor_is_refused(diabetes, tmp_path):
    model = dummy_model(diabetes, tmp_path / "dummy", DummyRegressor(strategy="mean"))
    result = run_evaluate(diabetes, model, tmp_path, threshold=-1.0)
    assert result["metrics"]["baseline_r2"] == pytest.approx(result["metrics"]["r2"])
    assert result["metrics"]["baseline_r2"] < 0.05  # the training mean explains nothing of the test rows
    assert not result["deploy"]
    assert "does not beat the baseline (predicting the training mean)" in result["reason"]


@pytest.mark.parametrize("dataset, estimator", [("breast_cancer", "random_forest"), ("iris", "logistic_regression")])
def test_a_real_classifier_beats_the_baseline_and_the_reason_names_both_numbers(dataset, estimator, breast_cancer,
                                                                                 iris, tmp_path):
    ingested = {"breast_cancer": breast_cancer, "iris": iris}[dataset]
    result = run_evaluate(ingested, real_model(ingested, tmp_path / "model", estimator), tmp_path, threshold=0.2)
    value, baseline = result["metrics"]["f1_macro"], result["metrics"]["baseline_f1_macro"]
    assert result["deploy"] and value > 0.9 and baseline < 0.45
    assert result["reason"] == (f"f1_macro {value:.4f} >= threshold 0.2000, beats the baseline (always the most "
                                f"frequent class) {baseline:.4f} by {value - baseline:.4f} >= 0.1000; "
                                "no production model yet")
    report = (tmp_path / "report.md").read_text()
    assert f"| baseline_f1_macro | {baseline:.4f} |" in report and "beat the baseline by at least 0.1" in report


def test_the_default_model_beats_the_regression_baseline(diabetes, diabetes_rf, tmp_path):
    result = run_evaluate(diabetes, diabetes_rf, tmp_path, threshold=0.2)
    assert result["deploy"] and "beats the baseline (predicting the training mean)" in result["reason"]
    assert result["metrics"]["r2"] - result["metrics"]["baseline_r2"] > 0.3


@pytest.mark.parametrize("min_gain", [-0.1, 1.5, float("nan"), True, "0.1"])
def test_a_bad_min_gain_is_named(diabetes, diabetes_rf, tmp_path, min_gain):
    with pytest.raises(EvaluateError, match=r"min_gain_over_baseline=.* is invalid: expected a number from 0 to 1"):
        run_evaluate(diabetes, diabetes_rf, tmp_path, min_gain=min_gain)
