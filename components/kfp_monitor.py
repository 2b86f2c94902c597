"""KFP v2 components of the monitor pipeline: measure drift of logged traffic, start a training run.

Thin wrappers, as in components.kfp_components (same image, same rules): the logic is in
components.monitor (drift of a traffic window) and pipelines.schedule (the KFP API).
"""

# No "from __future__ import annotations": KFP reads the real annotation objects.
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Artifact, Markdown, Metrics, Output

from components.kfp_components import NO_PIP


@dsl.component(**NO_PIP)
def monitor(
    log_uri: str,
    model_name: str,
    bucket: str,
    start_date: str,
    end_date: str,
    last_days: int,
    psi_threshold: float,
    ks_statistic_threshold: float,
    ks_pvalue_threshold: float,
    out_of_range_threshold: float,
    prediction_psi_threshold: float,
    min_drifting_features: int,
    min_rows: int,
    minio_endpoint: str,
    minio_secure: bool,
    metrics: Output[Metrics],
    report: Output[Markdown],
    html_report: Output[HTML],
    plots: Output[Artifact],
    drift_report: Output[Artifact],
) -> NamedTuple("Drift", [("retrain_recommended", bool), ("reason", str)]):
    """Compare a window of logged traffic with the production model's training profile.

    Args:
        log_uri: s3://bucket/prefix/ the server logs traffic under (its SERVING_INFERENCE_LOG).
        model_name: The served model: its log partition and its registry folder.
        bucket: Bucket of the model registry (production.json names the version compared with).
        start_date: First day of the window, YYYY-MM-DD (UTC); empty: use last_days.
        end_date: Last day of the window, YYYY-MM-DD; empty: today (UTC).
        last_days: The window is the last N days up to end_date; 0: use start_date.
        psi_threshold: A feature drifts at this PSI (0.1 moderate, 0.2 shifted).
        ks_statistic_threshold: ... or at this KS statistic, with a p-value below ks_pvalue_threshold.
        ks_pvalue_threshold: The KS test's significance level.
        out_of_range_threshold: ... or when this share of rows lies outside the training range.
        prediction_psi_threshold: The predictions drift at this PSI.
        min_drifting_features: Retraining is recommended from this many drifting features (or drifting predictions).
        min_rows: Fewer logged rows decide nothing.
        minio_endpoint: host:port of MinIO/S3 holding the log and the registry.
        minio_secure: Use TLS to reach the object store.
        metrics: Per feature PSI, KS statistic and p-value, out-of-range share; the decision as 1/0.
        report: The per-feature table as Markdown.
        html_report: The same with one plot per drifting feature (the Kubeflow UI renders it).
        plots: The plots as PNG files.
        drift_report: Everything as JSON.

    Returns:
        retrain_recommended and the reason, for the pipeline's retraining branch.
    """
    from collections import namedtuple

    from components import drift, monitor as step
    from components.objectstore import ObjectStore

    thresholds = drift.Thresholds(psi=psi_threshold, ks_statistic=ks_statistic_threshold,
                                  ks_pvalue=ks_pvalue_threshold, out_of_range=out_of_range_threshold,
                                  prediction_psi=prediction_psi_threshold,
                                  min_drifting_features=min_drifting_features, min_rows=min_rows)
    result = step.run(ObjectStore.from_env(minio_endpoint, minio_secure), log_uri, model_name, bucket,
                      step.Window.of(start_date, end_date, last_days), thresholds, drift_report.path,
                      html_report.path, plots.path, report.path)
    for name, value in drift.metrics(result).items():
        metrics.log_metric(name, value)
    drift_report.metadata.update(retrain_recommended=result["retrain_recommended"], reason=result["reason"],
                                 drifting_features=result["drifting_features"])
    return namedtuple("Drift", ["retrain_recommended", "reason"])(result["retrain_recommended"], result["reason"])


@dsl.component(**NO_PIP)
def start_training(kfp_host: str, namespace: str, pipeline_name: str, experiment: str, parameters: str,
                   reason: str) -> str:
    """Start a run of the training pipeline's newest version through the KFP API; returns the run id.

    Args:
        kfp_host: The KFP API as seen from the pod, e.g. http://ml-pipeline.kubeflow:8888.
        namespace: Profile namespace on a multi-user Kubeflow; empty: single-user.
        pipeline_name: The uploaded training pipeline (make upload).
        experiment: Experiment of the run.
        parameters: JSON object of the run's parameters; {}: the pipeline's defaults.
        reason: Why (the monitor's reason), logged with the run id.
    """
    import logging

    from pipelines import schedule

    run_id = schedule.start_training(kfp_host, namespace or None, pipeline_name, experiment, parameters)
    logging.getLogger("components.monitor").warning("started training run %s: %s", run_id, reason)
    return run_id
