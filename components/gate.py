"""The deploy gate: may a candidate replace the production model? Shared by evaluate and push.

A candidate must reach the threshold, beat a trivial baseline (the training split's most
frequent class, or its mean, scored on the same test split) by at least min_gain, and not be
worse than production. The baseline is what makes a low threshold safe: a macro F1 of 0.2 is
passed by a model that always answers the majority class (0.39 on breast cancer), which never
beats that baseline. Evaluate decides first. Push decides again right before it moves production, because another
run may have promoted a better model in between. No scikit-learn here, so push stays light.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from components.errors import EvaluateError

PRIMARY_METRIC = {"regression": "r2", "classification": "f1_macro"}
# Equal scores (an identical retrain) count as "not worse"; this absorbs float noise only.
TIE_TOLERANCE = 1e-9
# The baseline each task's candidate must beat, by name: what evaluate fits on the training split.
BASELINE_STRATEGY = {"regression": "mean", "classification": "most_frequent"}
BASELINE_TEXT = {"mean": "predicting the training mean", "most_frequent": "always the most frequent class"}


@dataclass(frozen=True)
class Decision:
    """The gate's answer: deploy or not, and why in one line."""

    deploy: bool
    reason: str
    # True when production was trained on the same data with the same parameters: nothing to push.
    nothing_new: bool = False


def check_min_gain(value: Any) -> float:
    """min_gain_over_baseline as a float, refused unless a number from 0 to 1.

    Args:
        value: the parameter as given.

    Returns:
        The value as a float; EvaluateError naming it otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise EvaluateError(f"parameter min_gain_over_baseline={value!r} is invalid: expected a number from 0 to 1 "
                            "(how much the primary metric must beat the trivial baseline)")
    return float(value)


def feature_list(schema: Any) -> list[str] | None:
    """The input schema as clients see it: feature names in order; None when the schema names none.

    Args:
        schema: a schema object, or anything (production metadata may be damaged).

    Returns:
        The names in order, or None.
    """
    if not isinstance(schema, dict) or not isinstance(schema.get("features"), list):
        return None
    return [f.get("name") if isinstance(f, dict) else f for f in schema["features"]]


def schema_difference(production_schema: Any, candidate_schema: Any) -> str:
    """'' when both take the same features in the same order, else what differs (for the message).

    Args:
        production_schema: production's schema.
        candidate_schema: the new model's.

    Returns:
        '' or the difference, in a few words.
    """
    theirs, ours = feature_list(production_schema), feature_list(candidate_schema)
    if theirs is None or ours is None or theirs == ours:
        return ""
    if sorted(map(str, theirs)) == sorted(map(str, ours)):
        return f"same {len(ours)} features in another order"
    missing = [name for name in theirs if name not in ours]
    added = [name for name in ours if name not in theirs]
    parts = [f"{len(ours)} features instead of {len(theirs)}"]
    if missing:
        parts.append(f"without {', '.join(map(str, missing[:5]))}{'...' if len(missing) > 5 else ''}")
    if added:
        parts.append(f"with {', '.join(map(str, added[:5]))}{'...' if len(added) > 5 else ''}")
    return "; ".join(parts)


def fingerprint(data_sha256: str, schema: Any, estimator: str, hyperparameters: Any, split: Any) -> str:
    """What determines the trained model: same fingerprint, same model (training is seeded).

    Args:
        data_sha256: sha256 of the training data.
        schema: the ingested schema.
        estimator: the estimator's name.
        hyperparameters: its parameters.
        split: what identifies the split (source, seed, test fraction).

    Returns:
        A sha256 hex digest.
    """
    canonical = json.dumps({"data_sha256": data_sha256, "schema": schema, "estimator": estimator,
                            "hyperparameters": hyperparameters, "split": split}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_production(production: Any, production_uri: str) -> dict | None:
    """The production metadata as read from the bucket, refused when the gate cannot read it.

    Args:
        production: production's metadata.json as parsed, or None.
        production_uri: its s3:// folder, for the message.

    Returns:
        The metadata, or None when there is no production model; EvaluateError when unreadable.
    """
    if production is None:
        return None
    where = f"{production_uri}metadata.json"
    if not isinstance(production, dict):
        raise EvaluateError(
            f"{where} holds a JSON {type(production).__name__}; expected an object: fix or remove it")
    primary = production.get("primary_metric")
    if not isinstance(primary, dict):
        raise EvaluateError(
            f"{where}: primary_metric is {primary!r}; expected an object such as "
            '{"name": "r2", "value": 0.4}: fix or remove it')
    return production


def baseline_check(metric: str, value: float, baseline: float | None, min_gain: float, task: str) -> tuple[bool, str]:
    """Whether value beats the trivial baseline by at least min_gain, and the words that say so.

    Args:
        metric: the primary metric's name, for the text.
        value: the candidate's primary metric.
        baseline: the baseline's score on the same test split; None: not measured, nothing to beat.
        min_gain: the least value - baseline that passes (equal passes, within TIE_TOLERANCE).
        task: regression or classification: which baseline (BASELINE_STRATEGY) the text names.

    Returns:
        (passes, text): text is '' without a baseline, else a clause naming both numbers.
    """
    if baseline is None:
        return True, ""
    gain = value - baseline
    what = f"baseline ({BASELINE_TEXT[BASELINE_STRATEGY[task]]})" if task in BASELINE_STRATEGY else "baseline"
    if gain + TIE_TOLERANCE < min_gain:
        return False, (f"{metric} {value:.4f} does not beat the {what} {baseline:.4f} by min_gain_over_baseline "
                       f"{min_gain:.4f} (gain {gain:+.4f})")
    return True, f"beats the {what} {baseline:.4f} by {gain:.4f} >= {min_gain:.4f}"


def decide(metric: str, value: float | None, threshold: float, task: str, production: Any,
           production_uri: str, *, schema: Any = None, training_fingerprint: str | None = None,
           allow_schema_change: bool = False, baseline: float | None = None, min_gain: float = 0.0) -> Decision:
    """Deploy when value reaches threshold, beats the baseline by min_gain and is not worse than production.

    Args:
        metric: the primary metric's name (r2, f1_macro).
        value: the candidate's value; None (not computable) never deploys.
        threshold: the least value that deploys.
        baseline: the trivial baseline's value on the same test split; None: no baseline check
            (push decides again without it: the baseline cannot change between the two).
        min_gain: the least value - baseline that deploys (0: as good as the baseline is enough).
        task: regression or classification; a production model of another task is not compared.
        production: production's metadata.json as parsed, or None when there is none.
        production_uri: its s3:// folder, for the messages.
        schema: the candidate's input schema; one that differs from production's (feature names or
            order) is refused unless allow_schema_change.
        training_fingerprint: equal to production's means the same data and parameters, so there is
            nothing new to learn (and nothing to push).
        allow_schema_change: let a different input schema replace production's.

    Returns:
        The Decision: deploy or not, and why in one line.
    """
    production = check_production(production, production_uri)
    if value is None:
        return Decision(False, f"{metric} could not be computed on the test split")
    version = production.get("version", "?") if production is not None else None
    recorded = ((production.get("lineage") or {}).get("fingerprint")
                if production is not None and isinstance(production.get("lineage"), dict) else None)
    if training_fingerprint and recorded == training_fingerprint:
        return Decision(False, f"nothing new to learn: production v{version} was trained on the same data "
                               "(same sha256) with the same parameters", nothing_new=True)
    if value < threshold:
        return Decision(False, f"{metric} {value:.4f} is below the threshold {threshold:.4f}")
    beats, against_baseline = baseline_check(metric, value, baseline, min_gain, task)
    if not beats:
        return Decision(False, against_baseline)
    passed = f"{metric} {value:.4f} >= threshold {threshold:.4f}" + (f", {against_baseline}" if against_baseline else "")
    if production is None:
        return Decision(True, f"{passed}; no production model yet")
    primary = production["primary_metric"]
    if production.get("task") != task or primary.get("name") != metric:
        return Decision(False, (
            f"the production model at {production_uri} is a {production.get('task')} model scored by "
            f"{primary.get('name')}; this candidate is {task} ({metric}): not comparable, use another model_name"
        ))
    difference = schema_difference(production.get("schema"), schema)
    if difference and not allow_schema_change:
        return Decision(False, (
            f"input schema differs from production v{version} ({difference}): its clients would get 400s; "
            "use another model_name, or set allow_schema_change=true to replace it anyway"))
    if not isinstance(primary.get("value"), (int, float)) or isinstance(primary.get("value"), bool):
        raise EvaluateError(f"{production_uri}metadata.json has no numeric primary_metric.value: cannot compare")
    best = float(primary["value"])
    if difference:  # allowed: scores on other features are not comparable, so only the threshold counts
        return Decision(True, f"{passed}; input schema changed "
                              f"({difference}), allowed by allow_schema_change: not compared with production "
                              f"v{version}")
    if value + TIE_TOLERANCE < best:
        return Decision(False, f"{metric} {value:.4f} is worse than production v{version} ({best:.4f})")
    return Decision(True, f"{passed} and not worse than production v{version} ({best:.4f})")
