"""Which estimators a run tries: the `candidates` parameter, its per-task defaults, and the plan.

A candidate is {"estimator": name, "hyperparameters": {...}}. The plan is what the pipeline's
ParallelFor iterates over: one JSON string per candidate, numbered. Strings, not objects,
because KFP carries a loop item of type dict as a protobuf Struct, which turns every integer
into a float (n_estimators=100 would reach scikit-learn as 100.0 and be refused).

This module imports no scikit-learn: the plan step only reads JSON. Whether a name or a
hyperparameter is valid is found out by fitting (components.selection), where a bad candidate
fails alone; `make run` checks them all before starting (pipelines.params).
"""

from __future__ import annotations

import json
from typing import Any

from components.errors import TrainError

# A few useful, different candidates per task: linear, kernel, forest, gradient boosting. The
# hyperparameters are spelled out so that the Kubeflow UI and the report show what ran.
DEFAULT_CANDIDATES: dict[str, list[dict[str, Any]]] = {
    "regression": [
        {"estimator": "ridge", "hyperparameters": {"alpha": 1.0}},
        {"estimator": "kernel_ridge", "hyperparameters": {"kernel": "rbf", "alpha": 0.1, "gamma": 0.05}},
        {"estimator": "random_forest", "hyperparameters": {"n_estimators": 100, "min_samples_leaf": 5}},
        {"estimator": "hist_gradient_boosting", "hyperparameters": {"max_iter": 100, "learning_rate": 0.05}},
    ],
    "classification": [
        {"estimator": "logistic_regression", "hyperparameters": {"C": 1.0}},
        {"estimator": "svc", "hyperparameters": {"C": 1.0, "kernel": "rbf"}},
        {"estimator": "random_forest", "hyperparameters": {"n_estimators": 100}},
        {"estimator": "hist_gradient_boosting", "hyperparameters": {"max_iter": 100}},
    ],
}


def parse_candidates(text: str) -> list[dict[str, Any]]:
    """'[{"estimator": "ridge", "hyperparameters": {"alpha": 2}}, ...]' -> the list, shape checked.

    Args:
        text: the candidates parameter.

    Returns:
        The list; TrainError for bad JSON or a bad item.
    """
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise TrainError(f"candidates {text!r} is not valid JSON: {exc}") from exc
    if not isinstance(value, list) or not value:
        raise TrainError(f"candidates {text!r} is invalid: expected a non-empty JSON list such as "
                         '[{"estimator": "ridge", "hyperparameters": {"alpha": 1}}]')
    parsed = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("estimator"), str) or not item["estimator"]:
            raise TrainError(f"candidates[{i}]={json.dumps(item)} is invalid: expected an object with a "
                             "non-empty string \"estimator\"")
        extra = sorted(set(item) - {"estimator", "hyperparameters"})
        if extra:
            raise TrainError(f"candidates[{i}] has unknown field {extra[0]!r}: expected estimator, hyperparameters")
        hyperparameters = item.get("hyperparameters", {})
        if not isinstance(hyperparameters, dict):
            raise TrainError(f"candidates[{i}].hyperparameters={json.dumps(hyperparameters)} is invalid: "
                             "expected a JSON object")
        parsed.append({"estimator": item["estimator"], "hyperparameters": hyperparameters})
    return parsed


def resolve(task: str, candidates: str, estimator: str, hyperparameters: str) -> list[dict[str, Any]]:
    """The candidates a run tries: estimator (a list of one), else candidates, else the task's defaults.

    Args:
        task: regression or classification.
        candidates: the candidates parameter (JSON list or "").
        estimator: the estimator parameter ("" for none).
        hyperparameters: its hyperparameters (JSON object).

    Returns:
        The candidates, each {"estimator", "hyperparameters"}.
    """
    if task not in DEFAULT_CANDIDATES:
        raise TrainError(f"task {task!r} is invalid: expected one of {', '.join(DEFAULT_CANDIDATES)}")
    if estimator:
        if candidates.strip():
            raise TrainError("parameters estimator and candidates are both set: set estimator (one model) "
                             "or candidates (a list), not both")
        try:
            params = json.loads(hyperparameters or "{}")
        except ValueError as exc:
            raise TrainError(f"hyperparameters {hyperparameters!r} is not valid JSON: {exc}") from exc
        if not isinstance(params, dict):
            raise TrainError(f"hyperparameters {hyperparameters!r} must be a JSON object such as "
                             '{"n_estimators": 200}')
        return [{"estimator": estimator, "hyperparameters": params}]
    if (hyperparameters or "{}").strip() not in ("", "{}"):
        raise TrainError(f"hyperparameters={hyperparameters!r} needs the estimator parameter: hyperparameters "
                         "apply to a single estimator; give a candidate's in candidates instead")
    if candidates.strip():
        return parse_candidates(candidates)
    return [dict(c, hyperparameters=dict(c["hyperparameters"])) for c in DEFAULT_CANDIDATES[task]]


def plan(task: str, candidates: str, estimator: str, hyperparameters: str) -> list[str]:
    """The ParallelFor items: one JSON string per candidate, with its index.

    Args:
        task: regression or classification.
        candidates: as for resolve.
        estimator: as for resolve.
        hyperparameters: as for resolve.

    Returns:
        The JSON strings, each with "index".
    """
    return [json.dumps({"index": i, **c}, sort_keys=True)
            for i, c in enumerate(resolve(task, candidates, estimator, hyperparameters))]


def label(candidate: dict[str, Any]) -> str:
    """'random_forest n_estimators=100 min_samples_leaf=5': how tables and plots name a candidate.

    Args:
        candidate: a candidate.

    Returns:
        Its label.
    """
    params = " ".join(f"{k}={v}" for k, v in candidate.get("hyperparameters", {}).items())
    return f"{candidate['estimator']} {params}".strip()
