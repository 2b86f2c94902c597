"""Evaluate: score the candidate on the held-out split and decide whether to deploy it.

Primary metric: R² for regression, macro F1 for classification (both higher is better).
The gate (components.gate) deploys when the primary metric reaches the threshold, beats a
trivial baseline fitted on the training split (DummyRegressor mean / DummyClassifier
most_frequent, scored on the same test split) by min_gain_over_baseline, AND is not
worse than the primary metric recorded in the production model's metadata.json, if any. The
production score was measured on that model's own held-out split: comparable when data
source, seed and test fraction are the same (the report says when they are not).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path

import joblib
import numpy as np
from sklearn import metrics as skm
from sklearn.dummy import DummyClassifier, DummyRegressor

from components import drift
from components.artifacts import (
    MODEL_FILE,
    TRAINING_FILE,
    feature_names,
    finite_or_none,
    read_json,
    schema_task,
    write_json,
)
from components.datasets import read_dataset
from components.errors import DriftError, EvaluateError
from components.gate import BASELINE_STRATEGY, PRIMARY_METRIC, Decision, check_min_gain, decide, fingerprint
from components.objectstore import ObjectStore
from components.registry import Registry, check_location, production_prefix
from components.sources import redact_source

log = logging.getLogger(__name__)


def load_model(model_dir: str | Path):
    """The train step's model.joblib (this run's own output, not a file from the bucket).

    Args:
        model_dir: the model folder.

    Returns:
        The fitted Pipeline; EvaluateError when it is missing or does not load.
    """
    path = Path(model_dir) / MODEL_FILE
    try:
        return joblib.load(path)
    except FileNotFoundError as exc:
        raise EvaluateError(f"model file {path} not found") from exc
    except Exception as exc:  # a corrupt pickle can raise nearly anything
        raise EvaluateError(f"cannot load model {path}: {type(exc).__name__}: {exc}") from exc


def regression_metrics(y: np.ndarray, predicted: np.ndarray) -> dict[str, float | None]:
    """R² (None for a single row), RMSE and MAE.

    Args:
        y: the true values.
        predicted: the model's.

    Returns:
        Name -> value (None where not finite).
    """
    return {
        "r2": finite_or_none(skm.r2_score(y, predicted)) if len(y) > 1 else None,
        "rmse": finite_or_none(math.sqrt(skm.mean_squared_error(y, predicted))),
        "mae": finite_or_none(skm.mean_absolute_error(y, predicted)),
    }


def classification_metrics(model, x: np.ndarray, y: np.ndarray, classes: list) -> tuple[dict, list[list[int]]]:
    """Accuracy, macro F1, ROC AUC and the confusion matrix.

    Args:
        model: the fitted classifier.
        x: the test features.
        y: the true labels.
        classes: every class, in the schema's order.

    Returns:
        (name -> value or None, the confusion matrix rows in classes order).
    """
    predicted = model.predict(x)
    scores = {
        "accuracy": finite_or_none(skm.accuracy_score(y, predicted)),
        "f1_macro": finite_or_none(skm.f1_score(y, predicted, average="macro", labels=classes, zero_division=0)),
        "roc_auc": None,
    }
    try:
        proba = model.predict_proba(x)
        if len(model.classes_) == 2:
            scores["roc_auc"] = finite_or_none(skm.roc_auc_score(y == model.classes_[1], proba[:, 1]))
        else:
            scores["roc_auc"] = finite_or_none(skm.roc_auc_score(y, proba, multi_class="ovr", labels=model.classes_))
    except ValueError as exc:  # e.g. a class absent from the test split: AUC is undefined, not an error
        log.warning("ROC AUC not computed: %s", exc)
    matrix = skm.confusion_matrix(y, predicted, labels=classes).tolist()
    return scores, matrix


def baseline_score(task: str, train_path: str | Path, schema: dict, x_test: np.ndarray, y_test: np.ndarray) -> float | None:
    """The primary metric of a model that ignores the features, fitted on the training split.

    DummyRegressor(strategy="mean") for regression, DummyClassifier(strategy="most_frequent") for
    classification: the least a real model must beat, scored like the candidate on the same rows.

    Args:
        task: regression or classification.
        train_path: the training split (CSV) ingest wrote.
        schema: the ingested schema.
        x_test: the test features.
        y_test: the true test values.

    Returns:
        Its R² or macro F1 on the test split (None where not computable, e.g. R² of one row).
    """
    x_train, y_train = read_dataset(train_path, schema)
    strategy = BASELINE_STRATEGY[task]
    if task == "regression":
        predicted = DummyRegressor(strategy=strategy).fit(x_train, y_train).predict(x_test)
        return regression_metrics(y_test, predicted)["r2"]
    dummy = DummyClassifier(strategy=strategy).fit(x_train, y_train)
    return finite_or_none(skm.f1_score(y_test, dummy.predict(x_test), average="macro",
                                       labels=schema["target"]["classes"], zero_division=0))


def _training_record(model_dir: str | Path) -> dict:
    """training.json beside the model; {} when absent (a model folder made by hand has no lineage)."""
    path = Path(model_dir) / TRAINING_FILE
    record = read_json(path, "training record") if path.exists() else {}
    return record if isinstance(record, dict) else {}


def _same_split(production: dict, data_source: str, split: dict) -> bool:
    # Older metadata may hold the source unredacted: compare what is left after redaction.
    recorded = production.get("data_source")
    return isinstance(recorded, str) and redact_source(recorded) == data_source and production.get("split") == split


# What each metric is measured in: RMSE and MAE are in the target's own units.
METRIC_UNITS = {"r2": "(1 is perfect)", "rmse": "target units", "mae": "target units", "accuracy": "share of rows",
                "f1_macro": "(1 is perfect)", "roc_auc": "(1 is perfect, 0.5 is chance)",
                "baseline_r2": "(the training mean, on the same rows)",
                "baseline_f1_macro": "(the most frequent class, on the same rows)"}


def _metric_text(value) -> str:
    """A recorded primary metric, {"name", "value"} or a number, as 'r2 0.4541' (never a raw dict)."""
    if isinstance(value, dict):
        number = value.get("value")
        shown = "n/a" if not isinstance(number, (int, float)) else f"{number:.4f}"
        return f"{value.get('name', 'primary metric')} {shown}"
    return "n/a" if not isinstance(value, (int, float)) else f"{value:.4f}"


def _selection_markdown(selection: dict) -> list[str]:
    lines = ["", f"Candidates, cross-validated on the training split ({selection['winner']['folds']} folds); "
                 f"selected: **{selection['winner']['label']}** — {selection['reason']}", "",
             f"| | candidate | CV {selection['metric']} mean ± std | fit (s per fold) | predict (µs per row) |",
             "|---|---|---|---|---|"]
    for r in selection["results"]:
        mark = "★" if r.get("index") == selection["winner"].get("index") else ""
        if r["status"] == "ok":
            lines.append(f"| {mark} | {r['label']} | {r['mean']:.4f} ± {r['std']:.4f} | {r['fit_seconds']:.3f} | "
                         f"{r['predict_us_per_row']:.1f} |")
        else:
            lines.append(f"| ✗ | {r['label']} | failed: {r['error']} | | |")
    return lines


def report_markdown(evaluation: dict, selection: dict | None = None) -> str:
    """The evaluation as a Markdown report.

    Args:
        evaluation: what run() writes.
        selection: the selection JSON, for the candidates' table (None: no table).

    Returns:
        The Markdown text.
    """
    primary = evaluation["primary_metric"]
    lines = [
        f"# Evaluation: {evaluation['model_name']}",
        "",
        f"**Decision: {'DEPLOY' if evaluation['deploy'] else 'NOT DEPLOYED'}** — {evaluation['reason']}",
        "",
        f"Task: {evaluation['task']}, test rows: {evaluation['test_rows']}, "
        f"primary metric: {primary['name']} (threshold {evaluation['threshold']}"
        f"{_baseline_text(evaluation.get('baseline'))})",
        "",
        "| metric | value | unit |",
        "|---|---|---|",
        *(f"| {name} | {'n/a' if value is None else f'{value:.4f}'} | {METRIC_UNITS.get(name, '')} |"
          for name, value in evaluation["metrics"].items()),
    ]
    production = evaluation.get("production")
    if production:
        lines += ["", f"Production: v{production['version']}, {_metric_text(production['primary_metric'])}"]
        if production.get("same_split") is False:
            lines.append("(scored on a different data source or split: the comparison is indicative)")
    matrix = evaluation.get("confusion_matrix")
    if matrix:
        labels = [str(label) for label in matrix["labels"]]
        lines += ["", "Confusion matrix (rows: actual, columns: predicted)", "",
                  "| | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        lines += [f"| **{label}** | " + " | ".join(str(n) for n in row) + " |"
                  for label, row in zip(labels, matrix["matrix"], strict=True)]
    if selection:
        lines += _selection_markdown(selection)
    data_drift = evaluation.get("drift")
    if data_drift:
        from components import drift_report

        lines += ["", drift_report.markdown(data_drift, _drift_title(data_drift), ("The data drifted", "No drift"))
                  .rstrip("\n")
                  if "features" in data_drift else f"Drift: {data_drift['reason']}"]
    return "\n".join(lines) + "\n"


def _baseline_text(baseline: dict | None) -> str:
    if not baseline:
        return ""
    return f", and beat the baseline by at least {baseline['min_gain']}"


def _drift_title(data_drift: dict) -> str:
    return f"Drift of this run's data (test split) from production v{data_drift['against_version']}'s training data"


def data_drift(production: dict | None, schema: dict, x: np.ndarray, y: np.ndarray,
               thresholds: drift.Thresholds | None) -> dict | None:
    """The new data (the held-out split, a random sample of it) against production's training profile.

    None without a production model; a reason alone when production has no profile (pushed before
    profiles were recorded) or other features (a schema change): nothing to compare then.
    """
    if production is None:
        return None
    version = production.get("version")
    if not production.get("profile"):
        return {"against_version": version, "reason": f"production v{version} has no training profile: not compared"}
    try:
        report = drift.compare(production["profile"], feature_names(schema), x, thresholds, targets=list(y))
    except DriftError as exc:
        return {"against_version": version, "reason": f"not compared: {exc}"}
    return {"against_version": version, **report}


def _write_html(evaluation: dict, selection: dict | None, model, x, y, schema: dict, seed: int,
                html_path: str | Path, plots_dir: str | Path | None, production_profile: dict | None = None) -> None:
    from components import report  # matplotlib: only when an HTML report is asked for

    primary = evaluation["primary_metric"]
    data = evaluation.get("drift")
    summary = report.summary_table([
        ("decision", f"{'DEPLOY' if evaluation['deploy'] else 'NOT DEPLOYED'}: {evaluation['reason']}"),
        ("task", evaluation["task"]), ("test rows", str(evaluation["test_rows"])),
        ("primary metric", f"{primary['name']} {_metric_text(primary['value'])} (threshold {evaluation['threshold']}"
                           f"{_baseline_text(evaluation.get('baseline'))})"),
        *((name, f"{_metric_text(value)} {METRIC_UNITS.get(name, '')}".strip())
          for name, value in evaluation["metrics"].items()),
        *((("selected", f"{selection['winner']['label']}: {selection['reason']}"),) if selection else ()),
        *((("drift", f"vs production v{data['against_version']}: {data['reason']}"),) if data else ()),
    ])
    figures = report.plots(evaluation["task"], model, x, y, schema, selection, seed)
    if data and data.get("drifting_features") and production_profile:
        from components import drift_report

        figures += drift_report.figures(data, production_profile, feature_names(schema), x)
    report.write(figures, plots_dir or Path(html_path).with_suffix(".plots"), html_path,
                 f"Evaluation: {evaluation['model_name']}", summary)


def run(*, test_path: str | Path, schema_path: str | Path, model_dir: str | Path, threshold: float,
        model_name: str, bucket: str, store: ObjectStore | None, data_source: str, seed: int,
        test_fraction: float, evaluation_path: str | Path, report_path: str | Path,
        allow_schema_change: bool = False, selection_path: str | Path | None = None,
        html_path: str | Path | None = None, plots_dir: str | Path | None = None,
        drift_thresholds: drift.Thresholds | None = None, drift_gate: bool = False,
        train_path: str | Path | None = None, min_gain_over_baseline: float = 0.0) -> dict:
    """The evaluate step: score the model on the held-out split, compare it with production, decide.

    The new data is also compared with production's training profile (components.drift): a
    report section, and a reason not to deploy only with drift_gate=True.

    The production model is the version production.json names (components.registry), never the
    production/ copy, which may lag; whether that copy matches is reported too.

    Args:
        test_path: the held-out split (CSV) ingest wrote.
        schema_path: the ingested schema.
        model_dir: the folder train wrote (model.joblib, training.json).
        threshold: the least primary metric (R², or macro F1) a model needs.
        model_name: the model's folder in the bucket.
        bucket: the bucket holding the models.
        store: the object store; None skips the production comparison (no object store configured).
        data_source: the source the split came from (redacted again here: it ends up in metadata.json).
        seed: the split's seed.
        test_fraction: the held-out share. These three identify the held-out split; they go into the
            evaluation (and from there into metadata.json) so a later run can tell whether it is
            compared on the same rows.
        evaluation_path: where the evaluation JSON goes (push reads it).
        report_path: where the Markdown report goes.
        allow_schema_change: let a model whose features differ from production's replace it.
        selection_path: train's selection JSON, for the reports' CV plot; None: no such plot.
        html_path: where the HTML report goes; None: none is written.
        plots_dir: the folder for the plots as PNG files (with html_path).
        drift_thresholds: PSI/KS/out-of-range thresholds for the drift section (None: components.drift's).
        drift_gate: refuse to deploy when the new data drifts from production's training profile.
        train_path: the training split (CSV): the baseline is fitted on it (the pipeline always
            passes it); None: no baseline, only the threshold and production count.
        min_gain_over_baseline: the least primary metric - baseline that deploys.

    Returns:
        The evaluation as written: metrics, primary metric, the decision (deploy, reason) and lineage.
    """
    if not isinstance(threshold, (int, float)) or math.isnan(threshold):
        raise EvaluateError(f"threshold={threshold!r} is invalid: expected a number")
    check_min_gain(min_gain_over_baseline)
    check_location(bucket, model_name)
    data_source = redact_source(data_source)  # it ends up in metadata.json, which the server shows
    schema = read_json(schema_path, "schema")
    task = schema_task(schema)
    model = load_model(model_dir)
    x, y = read_dataset(test_path, schema)
    try:
        if task == "regression":
            scores, matrix = regression_metrics(y, model.predict(x)), None
        else:
            classes = schema["target"]["classes"]
            scores, matrix = classification_metrics(model, x, y, classes)
            matrix = {"labels": classes, "matrix": matrix}
    except ValueError as exc:
        raise EvaluateError(f"scoring the model on {test_path} failed: {exc}") from exc

    metric = PRIMARY_METRIC[task]
    baseline = None
    if train_path is not None:
        try:
            baseline = baseline_score(task, train_path, schema, x, y)
        except ValueError as exc:
            raise EvaluateError(f"scoring the baseline fitted on {train_path} failed: {exc}") from exc
        scores[f"baseline_{metric}"] = baseline
    production_uri = f"s3://{bucket}/{production_prefix(model_name)}"
    split = {"seed": int(seed), "test_fraction": float(test_fraction)}
    training = _training_record(model_dir)
    data_sha256 = training.get("data_sha256")
    trained_as = (fingerprint(data_sha256, schema, training.get("estimator"), training.get("hyperparameters"), split)
                  if data_sha256 else None)
    registry = Registry(store, bucket, model_name) if store is not None else None
    production = registry.production_metadata() if registry is not None else None
    consistent, production_state = registry.production_state() if registry is not None else (True, "")
    decision = decide(metric, scores[metric], float(threshold), task, production, production_uri, schema=schema,
                      training_fingerprint=trained_as, allow_schema_change=bool(allow_schema_change),
                      baseline=baseline, min_gain=float(min_gain_over_baseline))
    drifted = data_drift(production, schema, x, y, drift_thresholds)
    if drift_gate and decision.deploy and drifted and drifted.get("retrain_recommended"):
        decision = Decision(False, f"the data drifted from production v{drifted['against_version']}'s training data "
                                   f"({drifted['reason']}) and drift_gate is on")
    evaluation = {
        "model_name": model_name,
        "task": task,
        "test_rows": int(len(y)),
        "metrics": scores,
        "primary_metric": {"name": metric, "value": scores[metric], "higher_is_better": True},
        "threshold": float(threshold),
        "baseline": None if train_path is None else {
            "strategy": BASELINE_STRATEGY[task], "value": baseline, "min_gain": float(min_gain_over_baseline)},
        "production": None if production is None else {
            "uri": production_uri,
            "version": production.get("version"),
            "primary_metric": production.get("primary_metric"),
            "same_split": _same_split(production, data_source, split),
            "copy_consistent": consistent,
            "copy_state": production_state,
        },
        "fingerprint": trained_as,
        "data_sha256": data_sha256,
        "allow_schema_change": bool(allow_schema_change),
        "confusion_matrix": matrix,
        "data_source": data_source,
        "split": split,
        "drift": drifted,
        **asdict(decision),
    }
    write_json(evaluation_path, evaluation)
    selection = read_json(selection_path, "selection") if selection_path else None
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(report_markdown(evaluation, selection))
    if html_path is not None:
        _write_html(evaluation, selection, model, x, y, schema, seed, html_path, plots_dir,
                    (production or {}).get("profile"))
    # The gate's "no" is a WARNING in the not_deployed step; here it is one fact among others.
    log.info("%s: %s", "deploy" if decision.deploy else "do not deploy", decision.reason)
    return evaluation
