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
# step changes nothing there and costs about 0.7 s of CPU and 2 s of wall time per step (on
# kfp.local it runs pip in this venv). No step runs it.
NO_PIP = {"base_image": PIPELINE_IMAGE, "install_kfp_package": False}


@dsl.component(**NO_PIP)
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
    """Read and validate the source; write train/test CSVs and the schema JSON.

    Args:
        source: Where the CSV table is: sklearn:diabetes, s3://bucket/key.csv, http(s)://... or a local
            path (redacted: credentials come from the source_secret Secret as SOURCE_URL, never from here).
        target: The target column.
        task: regression, classification, or auto (from the target's values).
        test_fraction: Share of the rows held out for evaluate (stratified for classification).
        seed: Seed of the split.
        missing_values: error (name the column and rows), drop (those rows) or impute (keep the NaNs).
        categorical_features: Comma-separated non-numeric columns, encoded as codes; "" for none.
        minio_endpoint: host:port of MinIO/S3 (for s3:// sources).
        minio_secure: Use TLS to reach the object store.
        train_data: The training split as CSV (features, then the target).
        test_data: The held-out split, same columns.
        schema: JSON: the features (names, ranges, categories), the target and the task.
    """
    from components.stepprocess import libraries_frozen

    with libraries_frozen():
        from components import ingest as step

    config = step.IngestConfig.from_params(target, task, test_fraction, seed, missing_values, categorical_features)
    summary = step.run(source=source, config=config, train_path=train_data.path, test_path=test_data.path,
                       schema_path=schema.path, minio_endpoint=minio_endpoint, minio_secure=minio_secure)
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

    Returns:
        The plan: one JSON string per candidate ({"index", "estimator", "hyperparameters"}).
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

    from components.stepprocess import libraries_frozen

    with libraries_frozen():
        from components import selection as step

    result = step.run(train_path=train_data.path, schema_path=schema.path, candidate=json.loads(candidate), seed=seed,
                      k=cv_folds)
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
    from components.stepprocess import libraries_frozen

    with libraries_frozen():
        from components import selection as step

    result = step.refit(train_data.path, schema.path, model.path, cv_results, seed, selection.path)
    info = result["training"]
    model.metadata.update({key: info[key] for key in ("framework", "sklearn_version", "estimator", "task",
                                                       "feature_names", "hyperparameters", "training_seconds")})
    selection.metadata.update(winner=result["winner"]["label"], reason=result["reason"])


@dsl.component(**NO_PIP)
def evaluate(
    train_data: Input[Dataset],
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
    drift_gate: bool,
    min_gain_over_baseline: float,
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    report: Output[Markdown],
    html_report: Output[HTML],
    plots: Output[Artifact],
    evaluation: Output[Artifact],
) -> NamedTuple("Gate", [("deploy", bool), ("reason", str)]):
    """Score on the test split, log Metrics (and a confusion matrix for classification), decide.

    Args:
        train_data: The training split written by ingest: the baseline (mean / most frequent class) is fitted on it.
        test_data: The held-out split written by ingest.
        schema: The ingested schema.
        model: The model train wrote (model.joblib and training.json).
        selection: train's selection JSON: the candidates' CV scores, plotted in the reports.
        threshold: The least primary metric (r2, or f1 for classification) a model needs to be deployed.
        model_name: Folder of the model in the bucket: its production model is the one to beat.
        bucket: Bucket holding the models.
        minio_endpoint: host:port of MinIO/S3.
        minio_secure: Use TLS to reach the object store.
        source: The (redacted) source the split came from, recorded with the evaluation.
        seed: Seed of the split, recorded so a later run knows whether it scores the same rows.
        test_fraction: Share held out, recorded for the same reason.
        allow_schema_change: Let a model whose input schema (feature names, order) differs from
            production's replace it; otherwise the gate refuses it.
        drift_gate: Refuse to deploy when the new data drifts from production's training profile
            (off: the drift is only reported, in the report and as drift_* Metrics).
        min_gain_over_baseline: The least primary metric minus the baseline's that deploys.
        metrics: The test-split metrics (baseline_r2 / baseline_f1_macro among them), and drift_*
            (rows, drifting_features, max_psi, ...) when production has a training profile to
            compare the new data with.
        classification_metrics: The confusion matrix (classification only).
        report: Markdown: the metrics, the comparison with production and the decision.
        html_report: One self-contained page with every plot (the Kubeflow UI renders it).
        plots: A folder with the same plots as PNG files.
        evaluation: JSON: metrics, primary metric, the deploy decision and why (push reads it).

    Returns:
        deploy: Whether the model passed the gate (threshold, baseline, and better than production or tied).
        reason: Why, in one line.
    """
    from collections import namedtuple

    from components.stepprocess import libraries_frozen

    with libraries_frozen():
        from components import evaluate as step
        from components.objectstore import ObjectStore

    result = step.run(test_path=test_data.path, schema_path=schema.path, model_dir=model.path, threshold=threshold,
                      model_name=model_name, bucket=bucket, store=ObjectStore.from_env(minio_endpoint, minio_secure),
                      data_source=source, seed=seed, test_fraction=test_fraction, evaluation_path=evaluation.path,
                      report_path=report.path, allow_schema_change=allow_schema_change, selection_path=selection.path,
                      html_path=html_report.path, plots_dir=plots.path, train_path=train_data.path,
                      drift_gate=drift_gate, min_gain_over_baseline=min_gain_over_baseline)
    for name, value in result["metrics"].items():
        if value is not None:
            metrics.log_metric(name, value)
    if result["drift"] and "features" in result["drift"]:
        from components import drift

        for name, value in drift.summary(result["drift"]).items():
            metrics.log_metric(f"drift_{name}", value)
    matrix = result["confusion_matrix"]
    if matrix:
        classification_metrics.log_confusion_matrix([str(label) for label in matrix["labels"]], matrix["matrix"])
    evaluation.metadata.update(deploy=result["deploy"], reason=result["reason"])
    return namedtuple("Gate", ["deploy", "reason"])(result["deploy"], result["reason"])


@dsl.component(**NO_PIP)
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
    """Upload s3://bucket/model_name/v<N>/, decide again on production as it is now, then move it.

    Args:
        model: The model train wrote.
        schema: The ingested schema (written into metadata.json for the server).
        evaluation: evaluate's JSON; push refuses to run when it says not to deploy.
        model_name: Folder of the model in the bucket.
        bucket: Bucket to publish into.
        minio_endpoint: host:port of MinIO/S3.
        minio_secure: Use TLS to reach the object store.
        run_id: This run's id, recorded in metadata.json.

    Returns:
        version: The N of the v<N>/ written.
        model_uri: s3://bucket/model_name/v<N>/ (immutable).
        production_uri: s3://bucket/model_name/production/.
        promoted: Whether production now points at v<N> (False: written, but the gate said no at push time).
        reason: The gate's reason, as decided right before moving production.
    """
    from collections import namedtuple

    from components.stepprocess import libraries_frozen

    # Push loads the model and writes model.skops: those libraries are imported inside, to be frozen.
    with libraries_frozen("joblib", "skops.io"):
        from components import push as step
        from components.objectstore import ObjectStore

    result = step.run(model_dir=model.path, schema_path=schema.path, evaluation_path=evaluation.path,
                      model_name=model_name, bucket=bucket, store=ObjectStore.from_env(minio_endpoint, minio_secure),
                      run_id=run_id)
    return namedtuple("Pushed", ["version", "model_uri", "production_uri", "promoted", "reason"])(
        result.version, result.model_uri, result.production_uri, result.promoted, result.reason)


@dsl.component(**NO_PIP)
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

    Returns:
        storage_uri: The storageUri the InferenceService now serves.
        previous_uri: The one it served before ("" when it had none).
        revision: Serverless mode: the predictor's latest ready revision ("" in RawDeployment mode).
    """
    from collections import namedtuple

    from components import deploy as step

    result = step.rollout(isvc, namespace, model_uri, None if canary_traffic_percent < 0 else canary_traffic_percent,
                          timeout_s)
    return namedtuple("Rollout", ["storage_uri", "previous_uri", "revision"])(
        result.served.storage_uri, result.previous.storage_uri or "", result.revision or "")


@dsl.component(**NO_PIP)
def not_deployed(reason: str, model_name: str, bucket: str):
    """The gate's "no" branch: a visible step that says why, since KFP skips a false branch silently.

    Args:
        reason: evaluate's reason for not deploying.
        model_name: Folder of the model in the bucket.
        bucket: Bucket holding the models (its production/ stays as it is).
    """
    import logging

    logging.getLogger("components.gate").warning(
        "model %s NOT deployed: %s. s3://%s/%s/production/ is unchanged.", model_name, reason, bucket, model_name)


@dsl.component(**NO_PIP)
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

    Returns:
        rows: Rows read.
        scored: Rows scored.
        rejected: Rows refused (on_bad_row=reject).
        outputs: The s3:// URIs written, comma-separated.
    """
    from collections import namedtuple

    from components.stepprocess import libraries_frozen

    with libraries_frozen():
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
