"""KFP v2 lightweight components: thin, typed wrappers around the plain logic modules.

Each body imports its logic from components.* at run time, so the image named by
PIPELINE_IMAGE must have this project installed (components/Dockerfile, extra [pipeline]).
kfp.local's SubprocessRunner ignores base_image and runs the bodies in the current
environment, where the project is installed editable. Serving never imports this module.
"""

# No "from __future__ import annotations": KFP reads the real annotation objects.
import os
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Input, Markdown, Metrics, Model, Output

DEFAULT_PIPELINE_IMAGE = "ghcr.io/sklearn-kserve-mlops/pipeline:0.1.0"
# `make compile PIPELINE_IMAGE=...` (or REGISTRY=/VERSION=): read at import, because
# @dsl.component fixes base_image when the decorator runs. The committed YAML uses the default.
PIPELINE_IMAGE = os.environ.get("PIPELINE_IMAGE") or DEFAULT_PIPELINE_IMAGE
# The image has kfp pinned (extra [pipeline]): KFP's default `pip install kfp==...` before each
# step changes nothing there and costs about 2 s per step (more on kfp.local, where it runs in
# this venv). The selection steps, one per candidate, skip it.
NO_PIP = {"base_image": PIPELINE_IMAGE, "install_kfp_package": False}


@dsl.component(base_image=PIPELINE_IMAGE)
def ingest(
    source: str,
    target: str,
    task: str,
    test_fraction: float,
    seed: int,
    missing_values: str,
    categorical_features: str,
    minio_endpoint: str,
    minio_secure: bool,
    train_data: Output[Dataset],
    test_data: Output[Dataset],
    schema: Output[Artifact],
):
    """Read and validate the source; write train/test CSVs and the schema JSON."""
    from components import ingest as step

    config = step.IngestConfig.from_params(target, task, test_fraction, seed, missing_values, categorical_features)
    summary = step.run(source, config, train_data.path, test_data.path, schema.path, minio_endpoint, minio_secure)
    # summary["source"] is redacted: artifact metadata is shown in the UI and kept in ML Metadata.
    train_data.metadata.update(rows=summary["train_rows"], source=summary["source"])
    test_data.metadata.update(rows=summary["test_rows"], source=summary["source"])
    schema.metadata.update(task=summary["task"], features=summary["features"])


@dsl.component(**NO_PIP)
def plan_candidates(schema: Input[Artifact], candidates: str, estimator: str, hyperparameters: str) -> list:
    """The candidates this run cross-validates, one JSON string each (the ParallelFor's items).

    Args:
        schema: The ingested schema: its target type says the task, whose defaults apply.
        candidates: JSON list of {"estimator", "hyperparameters"}; empty: the task's defaults.
        estimator: One estimator instead of a list (a list of one); empty: use candidates.
        hyperparameters: That estimator's hyperparameters as a JSON object.
    """
    from components import candidates as step
    from components.artifacts import read_json, schema_task

    return step.plan(schema_task(read_json(schema.path, "schema")), candidates, estimator, hyperparameters)


@dsl.component(**NO_PIP)
def cross_validate(
    train_data: Input[Dataset],
    schema: Input[Artifact],
    candidate: str,
    seed: int,
    cv_folds: int,
    metrics: Output[Metrics],
) -> str:
    """Score one candidate by k-fold cross-validation on the training split; a failure is returned, not raised.

    Args:
        train_data: The training split (the test split never reaches selection).
        schema: The ingested schema.
        candidate: One plan item: JSON {"index", "estimator", "hyperparameters"}.
        seed: Seed of the folds and the estimator.
        cv_folds: Number of folds (stratified for classification).
        metrics: The candidate's CV mean and std of the primary metric, fit seconds, predict µs per row.

    Returns:
        The result as JSON: status "ok" with the scores, or "failed" with the error.
    """
    import json

    from components import selection as step

    result = step.run(train_data.path, schema.path, json.loads(candidate), seed, cv_folds)
    # Numbers only: the Kubeflow UI shows a Metrics artifact's values as a table of scalars. The
    # candidate is this iteration's input; its error is in the returned JSON and the step's log.
    metrics.log_metric("failed", 0.0 if result["status"] == "ok" else 1.0)
    if result["status"] == "ok":
        metric = result["metric"]
        metrics.log_metric(f"cv_{metric}_mean", result["mean"])
        metrics.log_metric(f"cv_{metric}_std", result["std"])
        metrics.log_metric("fit_seconds", result["fit_seconds"])
        metrics.log_metric("predict_us_per_row", result["predict_us_per_row"])
    return json.dumps(result)


@dsl.component(**NO_PIP)
def train(
    train_data: Input[Dataset],
    schema: Input[Artifact],
    cv_results: list,
    seed: int,
    model: Output[Model],
    selection: Output[Artifact],
):
    """Pick the best candidate by CV and refit it on the whole training split.

    Args:
        train_data: The training split.
        schema: The ingested schema.
        cv_results: Every candidate's cross_validate result (gathered with dsl.Collected).
        seed: Seed of the estimator.
        model: A folder with model.joblib and training.json.
        selection: JSON: every candidate's CV result, the winner and why (ties go to the cheaper to serve).
    """
    from components import selection as step

    result = step.refit(train_data.path, schema.path, model.path, cv_results, seed, selection.path)
    info = result["training"]
    model.metadata.update({key: info[key] for key in ("framework", "sklearn_version", "estimator", "task",
                                                       "feature_names", "hyperparameters", "training_seconds")})
    selection.metadata.update(winner=result["winner"]["label"], reason=result["reason"])


@dsl.component(**NO_PIP)
def evaluate(
    test_data: Input[Dataset],
    schema: Input[Artifact],
    model: Input[Model],
    selection: Input[Artifact],
    threshold: float,
    model_name: str,
    bucket: str,
    minio_endpoint: str,
    minio_secure: bool,
    source: str,
    seed: int,
    test_fraction: float,
    allow_schema_change: bool,
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[Markdown],
    html_report: Output[HTML],
    plots: Output[Artifact],
    evaluation: Output[Artifact],
) -> NamedTuple("Gate", [("deploy", bool), ("reason", str)]):
    """Score on the test split, log Metrics (and a confusion matrix for classification), decide.

    Args:
        selection: train's selection JSON: the candidates' CV scores, plotted in the reports.
        html_report: One self-contained page with every plot (the Kubeflow UI renders it).
        plots: A folder with the same plots as PNG files.
        allow_schema_change: Let a model whose input schema (feature names, order) differs from
            production's replace it; otherwise the gate refuses it.
    """
    from collections import namedtuple

    from components import evaluate as step
    from components.objectstore import ObjectStore

    result = step.run(test_data.path, schema.path, model.path, threshold, model_name, bucket,
                      ObjectStore.from_env(minio_endpoint, minio_secure), source, seed, test_fraction,
                      evaluation.path, report.path, allow_schema_change, selection_path=selection.path,
                      html_path=html_report.path, plots_dir=plots.path)
    for name, value in result["metrics"].items():
        if value is not None:
            metrics.log_metric(name, value)
    matrix = result["confusion_matrix"]
    if matrix:
        classification_metrics.log_confusion_matrix([str(label) for label in matrix["labels"]], matrix["matrix"])
    evaluation.metadata.update(deploy=result["deploy"], reason=result["reason"])
    return namedtuple("Gate", ["deploy", "reason"])(result["deploy"], result["reason"])


@dsl.component(base_image=PIPELINE_IMAGE)
def push(
    model: Input[Model],
    schema: Input[Artifact],
    evaluation: Input[Artifact],
    model_name: str,
    bucket: str,
    minio_endpoint: str,
    minio_secure: bool,
    run_id: str,
) -> NamedTuple("Pushed", [("version", int), ("model_uri", str), ("production_uri", str), ("promoted", bool),
                           ("reason", str)]):
    """Upload s3://bucket/model_name/v<N>/, decide again on production as it is now, then move it."""
    from collections import namedtuple

    from components import push as step
    from components.objectstore import ObjectStore

    result = step.run(model.path, schema.path, evaluation.path, model_name, bucket,
                      ObjectStore.from_env(minio_endpoint, minio_secure), run_id)
    return namedtuple("Pushed", ["version", "model_uri", "production_uri", "promoted", "reason"])(
        result.version, result.model_uri, result.production_uri, result.promoted, result.reason)


@dsl.component(base_image=PIPELINE_IMAGE)
def deploy(
    model_uri: str,
    isvc: str,
    namespace: str,
    canary_traffic_percent: int,
    timeout_s: int,
) -> NamedTuple("Rollout", [("storage_uri", str), ("previous_uri", str), ("revision", str)]):
    """Point the InferenceService at the pushed version, wait until it is Ready, roll it back if not.

    Args:
        model_uri: The immutable s3://bucket/model/vN/ that push wrote (its model_uri output).
        isvc: Name of the InferenceService (serving.kserve.io/v1beta1) to roll out to.
        namespace: Its namespace; the run's ServiceAccount needs the Role model-deployer there.
        canary_traffic_percent: 0-100: share of traffic for the new revision (serverless mode only);
            negative: leave the InferenceService's canaryTrafficPercent as it is.
        timeout_s: Seconds to wait for Ready before the InferenceService is rolled back (the step then fails).
    """
    from collections import namedtuple

    from components import deploy as step

    result = step.rollout(isvc, namespace, model_uri, None if canary_traffic_percent < 0 else canary_traffic_percent,
                          timeout_s)
    return namedtuple("Rollout", ["storage_uri", "previous_uri", "revision"])(
        result.served.storage_uri, result.previous.storage_uri or "", result.revision or "")


@dsl.component(base_image=PIPELINE_IMAGE)
def not_deployed(reason: str, model_name: str, bucket: str):
    """The gate's "no" branch: a visible step that says why, since KFP skips a false branch silently."""
    import logging

    logging.getLogger("components.gate").warning(
        "model %s NOT deployed: %s. s3://%s/%s/production/ is unchanged.", model_name, reason, bucket, model_name)


@dsl.component(base_image=PIPELINE_IMAGE)
def batch_predict(
    input_uri: str,
    output_uri: str,
    model_name: str,
    bucket: str,
    model_version: str,
    key_columns: str,
    on_bad_row: str,
    chunk_rows: int,
    minio_endpoint: str,
    minio_secure: bool,
) -> NamedTuple("Scored", [("rows", int), ("scored", int), ("rejected", int), ("outputs", str)]):
    """Score CSV/Parquet files in the object store with a published model; write the predictions beside them.

    Args:
        input_uri: s3://bucket/key.csv or .parquet, or an s3:// prefix (every such file under it).
        output_uri: Output file or folder; "" writes <name>.predictions.<ext> beside each input.
        model_name: Folder of the model in the bucket.
        bucket: Bucket holding the model.
        model_version: production, or v<N> for a published version.
        key_columns: Comma-separated input columns copied to the output; "" writes the row number.
        on_bad_row: fail (the job fails, nothing is written) or reject (bad rows go to <name>.rejects.csv).
        chunk_rows: Rows read and scored at a time; memory grows with it, not with the file.
        minio_endpoint: host:port of MinIO/S3.
        minio_secure: Use TLS to reach the object store.
    """
    from collections import namedtuple

    from components.objectstore import ObjectStore
    from scoring import batch
    from scoring.library import load_model

    store = ObjectStore.from_env(minio_endpoint, minio_secure)
    options = batch.BatchOptions.from_params(key_columns, on_bad_row, chunk_rows)
    predictor = load_model(batch.model_uri(bucket, model_name, model_version), store)
    results = batch.score(predictor, input_uri, output_uri or None, options, store)
    return namedtuple("Scored", ["rows", "scored", "rejected", "outputs"])(
        sum(r.rows for r in results), sum(r.scored for r in results), sum(r.rejected for r in results),
        ",".join(r.output for r in results))
