"""The default thresholds (components.gate.DEFAULT_THRESHOLD): a model that ignores its inputs is
refused, the default runs are deployed with a margin."""

from __future__ import annotations

import json

import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor

from components import evaluate
from components.datasets import read_dataset
from components.gate import DEFAULT_THRESHOLD, PRIMARY_METRIC, decide, threshold_for

MARGIN = 0.15  # the default models clear the default threshold by at least this much


def _dummy_score(ingested, dummy) -> float:
    schema = json.loads(ingested.schema.read_text())
    x_train, y_train = read_dataset(ingested.train, schema)
    x_test, y_test = read_dataset(ingested.test, schema)
    dummy.fit(x_train, y_train)
    if schema["target"].get("classes"):
        scores, _ = evaluate.classification_metrics(dummy, x_test, y_test, schema["target"]["classes"])
        return scores["f1_macro"]
    return evaluate.regression_metrics(y_test, dummy.predict(x_test))["r2"]


@pytest.mark.parametrize(
    ("dataset", "task", "dummy"),
    [
        ("breast_cancer", "classification", DummyClassifier(strategy="most_frequent")),
        ("breast_cancer", "classification", DummyClassifier(strategy="stratified", random_state=0)),
        ("breast_cancer", "classification", DummyClassifier(strategy="uniform", random_state=0)),
        ("diabetes", "regression", DummyRegressor(strategy="mean")),
    ],
    ids=["majority-class", "class-shares", "uniform", "mean"],
)
def test_a_model_that_ignores_its_inputs_is_refused(request, dataset, task, dummy):
    score = _dummy_score(request.getfixturevalue(dataset), dummy)
    threshold = threshold_for(task, None)
    decision = decide(PRIMARY_METRIC[task], score, threshold, task, None, "s3://models/m/production")
    assert not decision.deploy and "below the threshold" in decision.reason, (score, decision)
    assert score < threshold - MARGIN, f"{dummy} scores {score:.3f}: too close to the default {threshold}"


@pytest.mark.parametrize(("dataset", "model"), [("breast_cancer", "breast_cancer_rf"), ("diabetes", "diabetes_rf")])
def test_the_default_runs_pass_the_default_threshold_with_margin(request, tmp_path, dataset, model):
    ingested = request.getfixturevalue(dataset)
    result = evaluate.run(ingested.test, ingested.schema, request.getfixturevalue(model), None, "m", "models", None,
                          ingested.source, ingested.config.seed, ingested.config.test_fraction,
                          tmp_path / "evaluation.json", tmp_path / "report.md")
    threshold = DEFAULT_THRESHOLD[result["task"]]
    assert result["threshold"] == threshold  # recorded: push re-checks with it
    assert result["deploy"], result["reason"]
    assert result["primary_metric"]["value"] > threshold + MARGIN


def test_a_named_threshold_wins_over_the_default():
    assert threshold_for("classification", 0.3) == 0.3
    assert threshold_for("regression", None) == 0.2 and threshold_for("classification", None) == 0.7
