"""The training pipeline: ingest -> cross-validate candidates (in parallel) -> train the best -> evaluate -> (gate) push -> (promoted) deploy, compiled to IR YAML.

    python -m pipelines.training_pipeline [--output pipelines/training_pipeline.yaml]

The compiled YAML is committed; tests/pipeline/test_compile.py fails when it differs from
a fresh compile. It uploads to the Kubeflow UI as it is, or through `make upload`.
"""

# No "from __future__ import annotations": KFP reads the real annotation objects.
import sys
from pathlib import Path

from kfp import dsl, kubernetes

from components.artifacts import DEFAULT_MODEL_NAME
from components.kfp_components import (
    cross_validate,
    deploy,
    evaluate,
    ingest,
    not_deployed,
    plan_candidates,
    push,
    train,
)
from components.deploy import DEFAULT_ISVC
from components.sources import SOURCE_URL_ENV
from pipelines import compiling
# MINIO_SECRET is re-exported: the minio_secret parameter's default, which tests and docs name from here.
from pipelines.tasks import MINIO_SECRET, sized, with_bucket_access

PIPELINE_NAME = "sklearn-training"
PIPELINE_DESCRIPTION = (
    "Ingest a table, train a scikit-learn model, evaluate it against a threshold and the "
    "production model, push it to MinIO/S3 for KServe and roll it out to the InferenceService."
)
PACKAGE_PATH = Path(__file__).with_name("training_pipeline.yaml")

# The full URL of an http(s) source with credentials (user-info, signed query): the parameter
# holds only the redacted URL, which KFP shows in its UI, logs and the pod's command line.
SOURCE_SECRET = "training-source"
SOURCE_SECRET_KEYS = {"url": SOURCE_URL_ENV}

# Candidates cross-validated at once: on kfp.local these are processes on this machine.
CV_PARALLELISM = 4
# The deploy step only talks to the Kubernetes API.
DEPLOY_CPU_REQUEST = "100m"
DEPLOY_MEMORY_REQUEST = "256Mi"
DEPLOY_MEMORY_LIMIT = "512Mi"


@dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)
def training_pipeline(
    source: str = "sklearn:diabetes",
    target: str = "target",
    task: str = "auto",
    test_fraction: float = 0.2,
    seed: int = 42,
    missing_values: str = "error",
    categorical_features: str = "",
    candidates: str = "",
    estimator: str = "",
    hyperparameters: str = "{}",
    cv_folds: int = 5,
    threshold: float = 0.2,
    min_gain_over_baseline: float = 0.1,
    model_name: str = DEFAULT_MODEL_NAME,
    bucket: str = "models",
    minio_endpoint: str = "minio-service.kubeflow:9000",
    minio_secure: bool = False,
    minio_secret: str = MINIO_SECRET,
    source_secret: str = SOURCE_SECRET,
    allow_schema_change: bool = False,
    drift_gate: bool = False,
    deploy_isvc: str = DEFAULT_ISVC,
    deploy_namespace: str = "sklearn-kserve-mlops",
    deploy_canary_percent: int = -1,
    deploy_timeout_s: int = 300,
):
    """Train, evaluate and publish a scikit-learn model.

    Args:
        source: sklearn:diabetes, sklearn:breast_cancer, s3://bucket/key.csv, http(s)://... or a path (CSV).
        target: Name of the target column.
        task: auto, regression or classification.
        test_fraction: Share of rows held out for evaluation, between 0 and 1.
        seed: Random seed of the split and the estimator.
        missing_values: Missing-value policy: error, drop or impute.
        categorical_features: Comma-separated names of non-numeric feature columns.
        candidates: JSON list of {"estimator": name, "hyperparameters": {...}} to cross-validate; the best
            is refit and evaluated. Empty: the task's defaults (linear, kernel, forest, gradient boosting).
        estimator: One estimator instead of candidates (a list of one): ridge, kernel_ridge, random_forest,
            hist_gradient_boosting (regression); logistic_regression, svc, random_forest,
            hist_gradient_boosting (classification). Empty: use candidates.
        hyperparameters: That estimator's hyperparameters as a JSON object, e.g. {"n_estimators": 200}.
        cv_folds: Folds of the cross-validation on the training split (stratified for classification).
        threshold: Minimum primary metric to deploy (R2 for regression, macro F1 for classification).
        min_gain_over_baseline: How much the primary metric must beat a trivial baseline fitted on the
            training split (the mean; the most frequent class) on the same test rows, 0-1.
        model_name: Folder of the model in the bucket.
        bucket: Bucket the model is pushed to (created when missing).
        minio_endpoint: host:port of MinIO/S3 (seaweedfs.kubeflow:9000 on Kubeflow 2.16 and later).
        minio_secure: Use TLS to reach the object store.
        minio_secret: Kubernetes Secret (keys accesskey, secretkey) whose keys may read and write the bucket.
        source_secret: Kubernetes Secret whose key url holds the full http(s) source with its credentials
            (source is then that URL redacted); optional: without it the source is fetched as given.
        allow_schema_change: Let a model with other input features (names or order) replace production.
        drift_gate: Refuse to deploy when this run's data drifts from production's training profile;
            off: the drift is reported (report, drift_* Metrics) and does not block the retrain it calls for.
        deploy_isvc: InferenceService to roll a promoted version out to; empty: no deploy step.
        deploy_namespace: Namespace of that InferenceService (the run's ServiceAccount needs the Role model-deployer there).
        deploy_canary_percent: 0-100: traffic share of the new revision (serverless only); -1: leave it as it is.
        deploy_timeout_s: Seconds to wait for the InferenceService to be Ready before rolling it back.
    """
    store = {"minio_endpoint": minio_endpoint, "minio_secure": minio_secure}
    # Tasks that read a mutable source or the bucket must run every time, never from cache.
    ingested = ingest(source=source, target=target, task=task, test_fraction=test_fraction, seed=seed,
                      missing_values=missing_values, categorical_features=categorical_features, **store)
    with_bucket_access(sized(ingested), minio_secret, optional=True).set_caching_options(False)
    kubernetes.use_secret_as_env(ingested, secret_name=source_secret, secret_key_to_env=SOURCE_SECRET_KEYS,
                                 optional=True)

    planned = plan_candidates(schema=ingested.outputs["schema"], candidates=candidates, estimator=estimator,
                              hyperparameters=hyperparameters)
    # Each candidate in its own pod, at most CV_PARALLELISM at a time; the test split is not an input.
    with dsl.ParallelFor(planned.output, parallelism=CV_PARALLELISM, name="candidates") as candidate:
        scored = sized(cross_validate(train_data=ingested.outputs["train_data"], schema=ingested.outputs["schema"],
                                      candidate=candidate, seed=seed, cv_folds=cv_folds))
    trained = sized(train(train_data=ingested.outputs["train_data"], schema=ingested.outputs["schema"],
                          cv_results=dsl.Collected(scored.outputs["Output"]), seed=seed))

    evaluated = evaluate(train_data=ingested.outputs["train_data"], test_data=ingested.outputs["test_data"],
                         schema=ingested.outputs["schema"], min_gain_over_baseline=min_gain_over_baseline,
                         model=trained.outputs["model"], selection=trained.outputs["selection"], threshold=threshold,
                         model_name=model_name, bucket=bucket,
                         source=source, seed=seed, test_fraction=test_fraction,
                         allow_schema_change=allow_schema_change, drift_gate=drift_gate, **store)
    with_bucket_access(sized(evaluated), minio_secret).set_caching_options(False)

    with dsl.If(evaluated.outputs["deploy"] == True, name="deploy"):  # noqa: E712 (KFP condition syntax)
        pushed = push(model=trained.outputs["model"], schema=ingested.outputs["schema"],
                      evaluation=evaluated.outputs["evaluation"], model_name=model_name, bucket=bucket,
                      run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, **store)
        with_bucket_access(pushed, minio_secret).set_caching_options(False)
        # Only a version that production now points at reaches the endpoint, and only if asked.
        # "rollout" is the outer condition: kfp.local (2.17) resolves a condition's channel only from
        # its DAG's inputs, so a condition on a sibling's output (push's promoted) evaluates False
        # with "Could not resolve parent input" warnings. Nested inside rollout, push's output is an
        # input of that DAG and resolves; on the cluster both orders mean the same.
        with dsl.If(deploy_isvc != "", name="rollout"):
            with dsl.If(pushed.outputs["promoted"] == True, name="promoted"):  # noqa: E712
                rolled = deploy(model_uri=pushed.outputs["model_uri"], isvc=deploy_isvc, namespace=deploy_namespace,
                                canary_traffic_percent=deploy_canary_percent, timeout_s=deploy_timeout_s)
                rolled.set_cpu_request(DEPLOY_CPU_REQUEST).set_memory_request(DEPLOY_MEMORY_REQUEST)
                rolled.set_memory_limit(DEPLOY_MEMORY_LIMIT).set_caching_options(False)
    with dsl.Else(name="keep-production"):
        not_deployed(reason=evaluated.outputs["reason"], model_name=model_name,
                     bucket=bucket).set_caching_options(False)


def compile_pipeline(output: str | Path = PACKAGE_PATH) -> Path:
    """Write the training pipeline's YAML (default: the committed one).

    Args:
        output: where to write it.

    Returns:
        Its path.
    """
    return compiling.compile_pipeline(training_pipeline, output)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.training_pipeline [--output PATH]``: compile it.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        The exit status (0).
    """
    return compiling.main(training_pipeline, PIPELINE_NAME, PACKAGE_PATH, argv)


if __name__ == "__main__":
    sys.exit(main())
