"""The deploy gate: may a candidate replace the production model? Shared by evaluate and push.

Evaluate decides first. Push decides again right before it moves production, because another
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


@dataclass(frozen=True)
class Decision:
    deploy: bool
    reason: str
    # True when production was trained on the same data with the same parameters: nothing to push.
    nothing_new: bool = False


def feature_list(schema: Any) -> list[str] | None:
    """The input schema as clients see it: feature names in order; None when the schema names none."""
    if not isinstance(schema, dict) or not isinstance(schema.get("features"), list):
        return None
    return [f.get("name") if isinstance(f, dict) else f for f in schema["features"]]


def schema_difference(production_schema: Any, candidate_schema: Any) -> str:
    """'' when both take the same features in the same order, else what differs (for the message)."""
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
    """What determines the trained model: same fingerprint, same model (training is seeded)."""
    canonical = json.dumps({"data_sha256": data_sha256, "schema": schema, "estimator": estimator,
                            "hyperparameters": hyperparameters, "split": split}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_production(production: Any, production_uri: str) -> dict | None:
    """The production metadata as read from the bucket, refused when the gate cannot read it."""
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


def decide(metric: str, value: float | None, threshold: float, task: str, production: Any,
           production_uri: str, *, schema: Any = None, training_fingerprint: str | None = None,
           allow_schema_change: bool = False) -> Decision:
    """Deploy when value reaches threshold and is not worse than production's primary metric, if any.

    schema: the candidate's input schema; one that differs from production's (feature names or order)
    is refused unless allow_schema_change. training_fingerprint: equal to production's means the same
    data and parameters, so there is nothing new to learn (and nothing to push).
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
    if production is None:
        return Decision(True, f"{metric} {value:.4f} >= threshold {threshold:.4f}; no production model yet")
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
        return Decision(True, f"{metric} {value:.4f} >= threshold {threshold:.4f}; input schema changed "
                              f"({difference}), allowed by allow_schema_change: not compared with production "
                              f"v{version}")
    if value + TIE_TOLERANCE < best:
        return Decision(False, f"{metric} {value:.4f} is worse than production v{version} ({best:.4f})")
    return Decision(True, f"{metric} {value:.4f} >= threshold {threshold:.4f} and not worse than production "
                          f"v{version} ({best:.4f})")
