"""The deploy gate (evaluate and push both ask it): every branch, and metadata it cannot read."""

from __future__ import annotations

import pytest

from components.errors import EvaluateError
from components.gate import decide

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


@pytest.mark.parametrize(
    "metadata, expected",
    [
        ([{"version": 1}], "s3://models/m/production/metadata.json holds a JSON list; expected an object"),
        ("r2=0.4", "s3://models/m/production/metadata.json holds a JSON str; expected an object"),
        ({"task": "regression", "primary_metric": 0.4},
         "s3://models/m/production/metadata.json: primary_metric is 0.4; expected an object"),
        ({"task": "regression", "primary_metric": ["r2", 0.4]}, "primary_metric is ['r2', 0.4]; expected an object"),
        ({"task": "regression"}, "primary_metric is None; expected an object"),
        ({"task": "regression", "primary_metric": {"name": "r2"}},
         "s3://models/m/production/metadata.json has no numeric primary_metric.value"),
        ({"task": "regression", "primary_metric": {"name": "r2", "value": True}}, "no numeric primary_metric.value"),
    ],
)
def test_unreadable_production_metadata_is_an_error_naming_it(metadata, expected):
    with pytest.raises(EvaluateError) as caught:
        decide("r2", 0.5, 0.2, "regression", metadata, PROD_URI)
    assert expected in str(caught.value)


def test_a_broken_production_record_is_reported_even_when_the_candidate_fails_anyway():
    with pytest.raises(EvaluateError, match="holds a JSON list"):
        decide("r2", 0.1, 0.2, "regression", [], PROD_URI)
