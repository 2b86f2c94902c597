"""The deploy gate (evaluate and push both ask it): every branch, and metadata it cannot read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from components.errors import EvaluateError
from components.gate import TIE_TOLERANCE, baseline_check, check_min_gain, decide, feature_list, fingerprint, schema_difference

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


# ---------------------------------------------------------------- edges that mutation testing found unpinned

def test_a_value_exactly_at_the_threshold_deploys():
    assert decide("r2", 0.25, 0.25, "regression", None, PROD_URI).deploy is True
    assert decide("r2", 0.25, 0.25, "regression", production(0.25), PROD_URI).deploy is True


@pytest.mark.parametrize("behind, deploy", [(0.0, True), (TIE_TOLERANCE / 2, True), (TIE_TOLERANCE, True),
                                            (TIE_TOLERANCE * 10, False), (1e-6, False)])
def test_the_tie_tolerance_absorbs_float_noise_only(behind, deploy):
    best = 0.5
    decision = decide("r2", best - behind, 0.2, "regression", production(best), PROD_URI)
    assert decision.deploy is deploy, decision.reason
    assert TIE_TOLERANCE == 1e-9  # the figures above are in its units


@pytest.mark.parametrize("task, metric", [("classification", "r2"), ("regression", "mae")])
def test_a_production_model_of_another_task_or_metric_alone_is_not_comparable(task, metric):
    decision = decide("r2", 0.9, 0.2, "regression", production(0.1, task=task, metric=metric), PROD_URI)
    assert decision.deploy is False
    assert f"is a {task} model scored by {metric}" in decision.reason


def test_production_trained_on_the_same_data_and_parameters_is_nothing_new():
    prod = {**production(0.1), "lineage": {"fingerprint": "abc"}}
    same = decide("r2", 0.9, 0.2, "regression", prod, PROD_URI, training_fingerprint="abc")
    assert (same.deploy, same.nothing_new) == (False, True)
    assert "production v3 was trained on the same data" in same.reason
    other = decide("r2", 0.9, 0.2, "regression", prod, PROD_URI, training_fingerprint="def")
    assert (other.deploy, other.nothing_new) == (True, False)
    no_lineage = decide("r2", 0.9, 0.2, "regression", production(0.1), PROD_URI, training_fingerprint="abc")
    assert (no_lineage.deploy, no_lineage.nothing_new) == (True, False)
    lineage_not_an_object = {**production(0.1), "lineage": "abc"}
    assert decide("r2", 0.9, 0.2, "regression", lineage_not_an_object, PROD_URI,
                  training_fingerprint="abc").nothing_new is False


def test_a_production_record_without_a_version_is_shown_as_unknown():
    prod = production(0.9)
    del prod["version"]
    assert "worse than production v? (0.9000)" in decide("r2", 0.4, 0.2, "regression", prod, PROD_URI).reason


SCHEMA = {"features": [{"name": "age"}, {"name": "bmi"}]}


def test_a_changed_input_schema_is_refused_unless_allowed():
    prod = {**production(0.9), "schema": {"features": [{"name": "bmi"}, {"name": "age"}]}}
    refused = decide("r2", 0.4, 0.2, "regression", prod, PROD_URI, schema=SCHEMA)
    assert refused.deploy is False
    assert "input schema differs from production v3 (same 2 features in another order)" in refused.reason
    allowed = decide("r2", 0.4, 0.2, "regression", prod, PROD_URI, schema=SCHEMA, allow_schema_change=True)
    assert allowed.deploy is True  # not compared with production's 0.9: other features, other scores
    assert "input schema changed (same 2 features in another order), allowed by allow_schema_change" in allowed.reason
    same = decide("r2", 0.4, 0.2, "regression", {**production(0.9), "schema": SCHEMA}, PROD_URI, schema=SCHEMA)
    assert "worse than production v3" in same.reason


@pytest.mark.parametrize("theirs, ours, expected", [
    (["a", "b"], ["a", "b"], ""),
    (["a", "b"], ["b", "a"], "same 2 features in another order"),
    (["a", "b"], ["a"], "1 features instead of 2; without b"),
    (["a"], ["a", "c"], "2 features instead of 1; with c"),
    (["a", "b"], ["a", "c"], "2 features instead of 2; without b; with c"),
    ([f"f{i}" for i in range(7)], [], "0 features instead of 7; without f0, f1, f2, f3, f4..."),
    ([], [f"f{i}" for i in range(6)], "6 features instead of 0; with f0, f1, f2, f3, f4..."),
    ([], [f"f{i}" for i in range(5)], "5 features instead of 0; with f0, f1, f2, f3, f4"),
])
def test_schema_difference_says_what_differs(theirs, ours, expected):
    assert schema_difference({"features": theirs}, {"features": ours}) == expected


@pytest.mark.parametrize("schema, expected", [
    ({"features": [{"name": "a"}, "b"]}, ["a", "b"]),
    ({"features": "a,b"}, None), (["a"], None), (None, None), ({}, None),
])
def test_feature_list_reads_names_in_order(schema, expected):
    assert feature_list(schema) == expected
    assert schema_difference(schema, {"features": ["zzz"]}) == ("" if expected is None else
                                                               f"1 features instead of {len(expected)}; "
                                                               f"without {', '.join(expected)}; with zzz")


def test_the_fingerprint_covers_every_input_and_not_key_order():
    base = dict(data_sha256="d", schema={"a": 1, "b": 2}, estimator="rf", hyperparameters={"n": 1}, split={"seed": 0})
    reference = fingerprint(**base)
    assert reference == hashlib.sha256(json.dumps(
        {"data_sha256": "d", "estimator": "rf", "hyperparameters": {"n": 1}, "schema": {"a": 1, "b": 2},
         "split": {"seed": 0}}, sort_keys=True).encode()).hexdigest()
    assert fingerprint(**{**base, "schema": {"b": 2, "a": 1}}) == reference
    for name, other in [("data_sha256", "e"), ("schema", {}), ("estimator", "svc"), ("hyperparameters", {}),
                        ("split", {"seed": 1})]:
        assert fingerprint(**{**base, name: other}) != reference, name
    # Values JSON cannot hold (a Path, a numpy scalar) are fingerprinted by their str().
    assert fingerprint(**{**base, "split": {"seed": Path("0")}}) == fingerprint(**{**base, "split": {"seed": "0"}})


# The baseline: value - baseline must reach min_gain (equal passes, within the tie tolerance).
@pytest.mark.parametrize(
    "value, baseline, min_gain, deploy",
    [
        (0.50, 0.40, 0.10, True),  # exactly the gain
        (0.50 - TIE_TOLERANCE / 2, 0.40, 0.10, True),  # float noise below it still passes
        (0.50 - 2 * TIE_TOLERANCE, 0.40, 0.10, False),
        (0.39, 0.39, 0.0, True),  # min_gain 0: as good as the baseline is enough
        (0.39, 0.39, 0.10, False),
        (0.95, 0.39, 0.10, True),
        (0.30, -0.50, 0.10, True),  # a negative baseline (R² of a mean on other rows) is no special case
        (-TIE_TOLERANCE, 0.0, 0.0, True),  # gain + tolerance == min_gain exactly: passes
        (-2 * TIE_TOLERANCE, 0.0, 0.0, False),
    ],
)
def test_baseline_margin_boundaries(value, baseline, min_gain, deploy):
    decision = decide("f1_macro", value, -1.0, "classification", None, PROD_URI, baseline=baseline, min_gain=min_gain)
    assert decision.deploy is deploy


def test_baseline_reasons_name_both_numbers():
    refused = decide("f1_macro", 0.3896, 0.0, "classification", None, PROD_URI, baseline=0.3896, min_gain=0.1)
    assert refused.reason == ("f1_macro 0.3896 does not beat the baseline (always the most frequent class) 0.3896 by "
                              "min_gain_over_baseline 0.1000 (gain +0.0000)")
    worse = decide("r2", 0.05, -1.0, "regression", None, PROD_URI, baseline=0.1, min_gain=0.0)
    assert worse.reason == ("r2 0.0500 does not beat the baseline (predicting the training mean) 0.1000 by "
                            "min_gain_over_baseline 0.0000 (gain -0.0500)")
    first = decide("r2", 0.45, 0.2, "regression", None, PROD_URI, baseline=-0.01, min_gain=0.1)
    assert first.reason == ("r2 0.4500 >= threshold 0.2000, beats the baseline (predicting the training mean) -0.0100 "
                            "by 0.4600 >= 0.1000; no production model yet")
    compared = decide("r2", 0.45, 0.2, "regression", production(0.4), PROD_URI, baseline=0.0, min_gain=0.1)
    assert compared.reason == ("r2 0.4500 >= threshold 0.2000, beats the baseline (predicting the training mean) "
                               "0.0000 by 0.4500 >= 0.1000 and not worse than production v3 (0.4000)")
    # a task without a known baseline (not one decide is asked about today) is still named plainly
    assert baseline_check("m", 0.5, 0.25, 0.1, "ranking") == (True, "beats the baseline 0.2500 by 0.2500 >= 0.1000")
    schema = {"features": [{"name": "a"}]}
    changed = decide("r2", 0.45, 0.2, "regression", {**production(0.9), "schema": {"features": [{"name": "b"}]}},
                     PROD_URI, schema=schema, allow_schema_change=True, baseline=0.0, min_gain=0.1)
    assert changed.deploy and changed.reason.startswith("r2 0.4500 >= threshold 0.2000, beats the baseline "
                                                        "(predicting the training mean) 0.0000 by 0.4500 >= 0.1000; "
                                                        "input schema changed")


def test_the_threshold_is_checked_before_the_baseline_and_no_baseline_means_no_check():
    below = decide("r2", 0.1, 0.2, "regression", None, PROD_URI, baseline=0.5, min_gain=0.1)
    assert below.reason == "r2 0.1000 is below the threshold 0.2000"
    # min_gain defaults to 0: with a baseline and no margin, as good as the baseline is enough
    assert decide("r2", 0.3, 0.2, "regression", None, PROD_URI, baseline=0.3).deploy
    unmeasured = decide("r2", 0.3, 0.2, "regression", None, PROD_URI, baseline=None, min_gain=0.9)
    assert unmeasured.deploy and unmeasured.reason == "r2 0.3000 >= threshold 0.2000; no production model yet"
    # a refused baseline wins over production: the candidate is not compared at all
    assert not decide("r2", 0.3, 0.2, "regression", production(0.1), PROD_URI, baseline=0.3, min_gain=0.1).deploy


@pytest.mark.parametrize("value", [0, 0.0, 0.1, 1, 1.0])
def test_min_gain_accepts_0_to_1(value):
    assert check_min_gain(value) == float(value) and isinstance(check_min_gain(value), float)


@pytest.mark.parametrize("value", [-0.01, 1.01, float("nan"), float("inf"), True, None, "0.1"])
def test_min_gain_refuses_the_rest_naming_it(value):
    with pytest.raises(EvaluateError) as caught:
        check_min_gain(value)
    assert str(caught.value) == (f"parameter min_gain_over_baseline={value!r} is invalid: expected a number from 0 to 1 "
                                 "(how much the primary metric must beat the trivial baseline)")
