"""The deploy gate: may a candidate replace the production model? Shared by evaluate and push.

Evaluate decides first. Push decides again right before it moves production, because another
run may have promoted a better model in between. No scikit-learn here, so push stays light.
"""

from __future__ import annotations

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
           production_uri: str) -> Decision:
    """Deploy when value reaches threshold and is not worse than production's primary metric, if any."""
    production = check_production(production, production_uri)
    if value is None:
        return Decision(False, f"{metric} could not be computed on the test split")
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
    if not isinstance(primary.get("value"), (int, float)) or isinstance(primary.get("value"), bool):
        raise EvaluateError(f"{production_uri}metadata.json has no numeric primary_metric.value: cannot compare")
    best = float(primary["value"])
    version = production.get("version", "?")
    if value + TIE_TOLERANCE < best:
        return Decision(False, f"{metric} {value:.4f} is worse than production v{version} ({best:.4f})")
    return Decision(True, f"{metric} {value:.4f} >= threshold {threshold:.4f} and not worse than production "
                          f"v{version} ({best:.4f})")
