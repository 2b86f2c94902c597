"""Model selection: k-fold cross-validation of one candidate on the training split, and the pick.

The pipeline runs cross_validate once per candidate (in parallel), gathers the results, and
select() picks the winner, which train refits on the whole training split. Only the training
split is ever given to this module: the held-out test split stays for evaluate alone, so the
score that gates a deploy was not used to choose the model.

A candidate that cannot be built or fitted comes back as a result with status "failed" and its
error, so one bad candidate does not stop the others; select() fails only when all have failed.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits

from components.artifacts import finite_or_none, read_json, schema_task
from components.candidates import label
from components.datasets import read_dataset
from components.errors import PipelineError, TrainError
from components.gate import PRIMARY_METRIC
from components.train import build_pipeline

log = logging.getLogger(__name__)

DEFAULT_FOLDS = 5
# CV means closer than this are a tie: fold-to-fold noise on these metrics (R², macro F1) is larger.
TIE_TOLERANCE = 1e-3


class SelectionError(TrainError):
    """Every candidate failed: the message lists each one's error."""


def _score(task: str, y: np.ndarray, predicted: np.ndarray, classes: list | None) -> float:
    if task == "regression":
        return float(skm.r2_score(y, predicted))
    return float(skm.f1_score(y, predicted, average="macro", labels=classes, zero_division=0))


def folds_of(task: str, y: np.ndarray, k: int, seed: int):
    """Stratified for classification (every fold sees every class), shuffled with the run's seed.

    Args:
        task: regression or classification.
        y: the target.
        k: the number of folds (>= 2, <= rows).
        seed: the shuffle's seed.

    Returns:
        The splitter (StratifiedKFold or KFold, shuffled); TrainError for an unusable k.
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise TrainError(f"cv_folds={k!r} is invalid: expected an integer of at least 2")
    if k > len(y):
        raise TrainError(f"cv_folds={k} is invalid: the training split has only {len(y)} rows")
    splitter = StratifiedKFold if task == "classification" else KFold
    return splitter(n_splits=k, shuffle=True, random_state=seed)


def cross_validate(schema: dict, x: np.ndarray, y: np.ndarray, candidate: dict[str, Any], seed: int,
                   k: int = DEFAULT_FOLDS) -> dict[str, Any]:
    """One candidate's k-fold scores on (x, y); failures are returned, not raised.

    Args:
        schema: the ingested schema.
        x: the training features.
        y: the target.
        candidate: one plan item.
        seed: seed of the folds and the estimator.
        k: the number of folds (stratified for classification).

    Returns:
        The same result as run().
    """
    task = schema_task(schema)
    result: dict[str, Any] = {
        "index": candidate.get("index"), "estimator": candidate["estimator"],
        "hyperparameters": candidate.get("hyperparameters", {}), "label": label(candidate),
        "metric": PRIMARY_METRIC[task], "folds": k, "rows": int(len(y)),
    }
    classes = schema["target"].get("classes")
    try:
        # One thread: candidates run side by side, and OpenMP threads per process (gradient
        # boosting) oversubscribe the cores, making fits many times slower, not faster.
        with threadpool_limits(1):
            return _folds(result, task, schema, x, y, candidate, seed, k, classes)
    except Exception as exc:  # noqa: BLE001 - a candidate may fail in any way; it must not stop the others
        message = str(exc) if isinstance(exc, PipelineError) else f"{type(exc).__name__}: {exc}"
        log.warning("candidate %s failed: %s", result["label"], message)
        return {**result, "status": "failed", "error": message}


def _folds(result: dict, task: str, schema: dict, x: np.ndarray, y: np.ndarray, candidate: dict, seed: int,
           k: int, classes: list | None) -> dict[str, Any]:
    """The k fits and scores; raises on any failure (cross_validate turns it into a result)."""
    pipeline = build_pipeline(schema, candidate["estimator"], candidate.get("hyperparameters", {}), seed)
    scores, fit_s, predict_us = [], [], []
    for train_rows, valid_rows in folds_of(task, y, k, seed).split(x, y):
        model = clone(pipeline)
        started = time.perf_counter()
        model.fit(x[train_rows], y[train_rows])
        fit_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        predicted = model.predict(x[valid_rows])
        predict_us.append((time.perf_counter() - started) / len(valid_rows) * 1e6)
        scores.append(_score(task, y[valid_rows], predicted, classes))
    mean = finite_or_none(statistics.fmean(scores))
    if mean is None:
        return {**result, "status": "failed", "error": f"{result['metric']} is not finite on some fold: {scores}"}
    return {**result, "status": "ok", "error": None,
            "scores": [round(s, 6) for s in scores], "mean": mean, "std": float(np.std(scores)),
            "fit_seconds": statistics.fmean(fit_s),
            # The median: one fold's timing can be hit by another process on a shared machine.
            "predict_us_per_row": statistics.median(predict_us)}


def run(*, train_path: str | Path, schema_path: str | Path, candidate: dict[str, Any], seed: int,
        k: int = DEFAULT_FOLDS) -> dict[str, Any]:
    """The cross-validate step: read the training split (and only it) and score one candidate.

    Args:
        train_path: the training split (CSV).
        schema_path: the ingested schema.
        candidate: {"index", "estimator", "hyperparameters"}: one plan item.
        seed: seed of the folds and the estimator.
        k: the number of folds.

    Returns:
        The result: status "ok" with the fold scores, mean, std and timings, or "failed" with the error.
    """
    schema = read_json(schema_path, "schema")
    x, y = read_dataset(train_path, schema)
    return cross_validate(schema, x, y, candidate, seed, k)


def select(results: list[dict[str, Any]]) -> dict[str, Any]:
    """{"winner": result, "reason": why, "results": all, by index}. Raises SelectionError if none succeeded.

    Args:
        results: every candidate's cross_validate result.

    Returns:
        The selection; ties (means within the tolerance) go to the cheaper to predict.
    """
    results = sorted(results, key=lambda r: (r.get("index") is None, r.get("index") or 0))
    ok = [r for r in results if r["status"] == "ok"]
    if not ok:
        errors = "; ".join(f"{r['label']}: {r['error']}" for r in results)
        raise SelectionError(f"all {len(results)} candidates failed: {errors}")
    best = max(r["mean"] for r in ok)
    tied = [r for r in ok if best - r["mean"] <= TIE_TOLERANCE]
    winner = min(tied, key=lambda r: r["predict_us_per_row"])
    metric = winner["metric"]
    reason = f"best CV {metric} ({winner['mean']:.4f} ± {winner['std']:.4f} over {winner['folds']} folds)"
    if len(tied) > 1:
        others = ", ".join(r["label"] for r in tied if r is not winner)
        reason += (f"; tied within {TIE_TOLERANCE} with {others}: chose the cheaper to serve "
                   f"({winner['predict_us_per_row']:.1f} µs per row to predict)")
    failed = len(results) - len(ok)
    if failed:
        reason += f"; {failed} of {len(results)} candidates failed"
    return {"metric": metric, "winner": winner, "reason": reason, "results": results}


def table(selection: dict[str, Any]) -> str:
    """The candidates as a fixed-width text table, the winner marked with '*'.

    Args:
        selection: what select returned (with its metric).

    Returns:
        The table, one line per candidate.
    """
    metric = selection["metric"]
    rows = [("", "candidate", f"CV {metric} mean ± std", "fit s", "predict µs/row")]
    for r in selection["results"]:
        mark = "*" if r is selection["winner"] or r.get("index") == selection["winner"].get("index") else ""
        if r["status"] == "ok":
            rows.append((mark, r["label"], f"{r['mean']:.4f} ± {r['std']:.4f}", f"{r['fit_seconds']:.3f}",
                         f"{r['predict_us_per_row']:.1f}"))
        else:
            rows.append(("x", r["label"], f"FAILED: {r['error']}", "", ""))
    widths = [max(len(row[i]) for row in rows if row[3] or i < 2) for i in range(5)]
    lines = []
    for row in rows:
        if not row[3] and row[2].startswith("FAILED"):
            lines.append(f"{row[0]:<1} {row[1]:<{widths[1]}}  {row[2]}")
        else:
            lines.append(f"{row[0]:<1} {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}  "
                         f"{row[4]:>{widths[4]}}")
    return "\n".join(lines) + f"\n* winner: {selection['winner']['label']} — {selection['reason']}\n"


def refit(train_path: str | Path, schema_path: str | Path, model_dir: str | Path, results: list[str | dict],
          seed: int, selection_path: str | Path) -> dict[str, Any]:
    """The train step: pick the winner of the gathered CV results and refit it on the whole training split.

    Writes the model folder (components.train) and selection_path: every candidate's CV result,
    the winner and why. Returns that selection, with the training record under "training".

    Args:
        train_path: the training split (CSV).
        schema_path: the ingested schema.
        model_dir: where the model goes.
        results: the gathered CV results (JSON strings or dicts).
        seed: the estimator's random_state.
        selection_path: where the selection JSON goes.

    Returns:
        {"winner", "reason", "training"}: the winning result, why, and the training record.
    """
    from components import train
    from components.artifacts import write_json

    parsed = [json.loads(r) if isinstance(r, str) else r for r in results]
    selection = select(parsed)
    winner = selection["winner"]
    info = train.run(train_path=train_path, schema_path=schema_path, model_dir=model_dir,
                     estimator=winner["estimator"], hyperparameters=winner["hyperparameters"], seed=seed)
    write_json(selection_path, selection)
    log.info("selected %s: %s", winner["label"], selection["reason"])
    return {**selection, "training": info}
