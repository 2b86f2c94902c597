"""The monitor pipeline: drift of logged traffic against production's training profile -> (recommended, allowed) start training.

    python -m pipelines.monitor_pipeline [--output pipelines/monitor_pipeline.yaml]

The compiled YAML is committed; tests/pipeline/test_monitor.py fails when it differs from a fresh
compile. Upload it with `make upload PIPELINE=sklearn-monitor`, schedule it with
`make schedule PIPELINE=monitor`. Locally, `make drift` runs the same step against the local store.
"""

# No "from __future__ import annotations": KFP reads the real annotation objects.
import json
import sys
from pathlib import Path

from kfp import dsl

from components import drift
from components.kfp_monitor import monitor, start_training
from components.monitor import Window, parse_log_uri
from contract.files import DEFAULT_MODEL_NAME
from pipelines import compiling, params
from pipelines.tasks import MINIO_SECRET, sized, with_bucket_access
from pipelines.training_pipeline import PIPELINE_NAME as TRAINING_PIPELINE

PIPELINE_NAME = "sklearn-monitor"
PIPELINE_DESCRIPTION = (
    "Compare a window of the endpoint's logged traffic with the production model's training data profile "
    "(PSI, KS, out-of-range share, prediction drift); when retraining is recommended and allowed, start a "
    "training run."
)
PACKAGE_PATH = Path(__file__).with_name("monitor_pipeline.yaml")
DEFAULTS = drift.Thresholds()
# The KFP API as pods of a standard Kubeflow install reach it.
IN_CLUSTER_KFP_HOST = "http://ml-pipeline.kubeflow:8888"


@dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)
def monitor_pipeline(
    log_uri: str = "s3://logs/inference/",
    model_name: str = DEFAULT_MODEL_NAME,
    bucket: str = "models",
    start_date: str = "",
    end_date: str = "",
    last_days: int = 2,
    psi_threshold: float = DEFAULTS.psi,
    ks_statistic_threshold: float = DEFAULTS.ks_statistic,
    ks_pvalue_threshold: float = DEFAULTS.ks_pvalue,
    out_of_range_threshold: float = DEFAULTS.out_of_range,
    prediction_psi_threshold: float = DEFAULTS.prediction_psi,
    min_drifting_features: int = DEFAULTS.min_drifting_features,
    min_rows: int = DEFAULTS.min_rows,
    minio_endpoint: str = "minio-service.kubeflow:9000",
    minio_secure: bool = False,
    minio_secret: str = MINIO_SECRET,
    retrain: bool = False,
    kfp_host: str = IN_CLUSTER_KFP_HOST,
    kfp_namespace: str = "",
    training_pipeline: str = TRAINING_PIPELINE,
    training_experiment: str = TRAINING_PIPELINE,
    training_parameters: str = "{}",
):
    """Measure drift of logged traffic; start a training run when it calls for one and retrain is true.

    Args:
        log_uri: s3://bucket/prefix/ the server logs traffic under (its SERVING_INFERENCE_LOG).
        model_name: The served model: its log partition and its registry folder.
        bucket: Bucket of the model registry.
        start_date: First day of the window, YYYY-MM-DD (UTC); empty: use last_days.
        end_date: Last day of the window, YYYY-MM-DD; empty: today (UTC).
        last_days: The window is the last N days up to end_date (2: yesterday, whole, and today so far);
            0: use start_date.
        psi_threshold: A feature drifts at this PSI.
        ks_statistic_threshold: ... or at this KS statistic with a p-value below ks_pvalue_threshold.
        ks_pvalue_threshold: The KS test's significance level.
        out_of_range_threshold: ... or when this share of rows lies outside the training range.
        prediction_psi_threshold: The predictions drift at this PSI.
        min_drifting_features: Retraining is recommended from this many drifting features (or drifting predictions).
        min_rows: Fewer logged rows decide nothing.
        minio_endpoint: host:port of MinIO/S3 (seaweedfs.kubeflow:9000 on Kubeflow 2.16 and later).
        minio_secure: Use TLS to reach the object store.
        minio_secret: Kubernetes Secret (keys accesskey, secretkey) whose keys may read the log and the registry.
        retrain: Start a training run when retraining is recommended (false: only report).
        kfp_host: The KFP API as the pod reaches it.
        kfp_namespace: Profile namespace of the training run on a multi-user Kubeflow; empty: single-user.
        training_pipeline: Name of the uploaded training pipeline; its newest version runs.
        training_experiment: Experiment of the training run.
        training_parameters: JSON object of the training run's parameters; {}: its defaults.
    """
    measured = monitor(log_uri=log_uri, model_name=model_name, bucket=bucket, start_date=start_date,
                       end_date=end_date, last_days=last_days, psi_threshold=psi_threshold,
                       ks_statistic_threshold=ks_statistic_threshold, ks_pvalue_threshold=ks_pvalue_threshold,
                       out_of_range_threshold=out_of_range_threshold,
                       prediction_psi_threshold=prediction_psi_threshold,
                       min_drifting_features=min_drifting_features, min_rows=min_rows,
                       minio_endpoint=minio_endpoint, minio_secure=minio_secure)
    # Traffic and production change under the same names: never answer from cache.
    with_bucket_access(sized(measured), minio_secret).set_caching_options(False)
    with dsl.If(measured.outputs["retrain_recommended"] == True, name="drifted"):  # noqa: E712 (KFP syntax)
        with dsl.If(retrain == True, name="retrain"):  # noqa: E712
            start_training(kfp_host=kfp_host, namespace=kfp_namespace, pipeline_name=training_pipeline,
                           experiment=training_experiment, parameters=training_parameters,
                           reason=measured.outputs["reason"]).set_caching_options(False)


def check(values: dict) -> None:
    """The monitor pipeline's parameters, checked as its steps will check them (make upload, make schedule)."""
    params._check_secret_name(values, "minio_secret")
    parse_log_uri(values["log_uri"])
    Window.of(values["start_date"], values["end_date"], values["last_days"])
    drift.Thresholds(psi=values["psi_threshold"], ks_statistic=values["ks_statistic_threshold"],
                     ks_pvalue=values["ks_pvalue_threshold"], out_of_range=values["out_of_range_threshold"],
                     prediction_psi=values["prediction_psi_threshold"],
                     min_drifting_features=values["min_drifting_features"], min_rows=values["min_rows"])
    try:
        parsed = json.loads(values["training_parameters"])
    except ValueError as exc:
        raise params.ParamError(f"parameter training_parameters={values['training_parameters']!r} is invalid: "
                                f"expected a JSON object ({exc})") from None
    if not isinstance(parsed, dict):
        raise params.ParamError(f"parameter training_parameters={values['training_parameters']!r} is invalid: "
                                "expected a JSON object of the training pipeline's parameters")


def compile_pipeline(output: str | Path = PACKAGE_PATH) -> Path:
    """Write the monitor pipeline's YAML (default: the committed one); returns its path."""
    return compiling.compile_pipeline(monitor_pipeline, output)


def main(argv: list[str] | None = None) -> int:
    return compiling.main(monitor_pipeline, PIPELINE_NAME, PACKAGE_PATH, argv)


if __name__ == "__main__":
    sys.exit(main())
