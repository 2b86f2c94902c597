"""The batch-scoring pipeline (precompute): score files in the object store with a published model.

    python -m pipelines.batch_scoring_pipeline [--output pipelines/batch_scoring_pipeline.yaml]

One step, batch_predict (scoring.batch): predictions are written beside the input (or to
output_uri) under a temporary key and moved into place when complete. The compiled YAML is
committed; tests/batch/test_pipeline.py fails when it differs from a fresh compile. It uploads
like the training one: `make upload UPLOAD_ARGS="--pipeline batch-scoring"`.
"""

# No "from __future__ import annotations": KFP reads the real annotation objects.
import sys
from pathlib import Path

from kfp import dsl

from components.artifacts import DEFAULT_MODEL_NAME
from components.kfp_components import batch_predict
from pipelines import compiling
from pipelines.tasks import MINIO_SECRET, sized, with_bucket_access

PIPELINE_NAME = "batch-scoring"
PIPELINE_DESCRIPTION = (
    "Score CSV or Parquet files in MinIO/S3 with the production (or a named) model version, in chunks, "
    "and write the predictions beside them atomically."
)
PACKAGE_PATH = Path(__file__).with_name("batch_scoring_pipeline.yaml")


@dsl.pipeline(name=PIPELINE_NAME, description=PIPELINE_DESCRIPTION)
def batch_scoring_pipeline(
    input_uri: str = "s3://data/diabetes.csv",
    output_uri: str = "",
    model_name: str = DEFAULT_MODEL_NAME,
    bucket: str = "models",
    model_version: str = "production",
    key_columns: str = "",
    on_bad_row: str = "fail",
    chunk_rows: int = 50000,
    minio_endpoint: str = "minio-service.kubeflow:9000",
    minio_secure: bool = False,
    minio_secret: str = MINIO_SECRET,
):
    """Score files with a published model.

    Args:
        input_uri: s3://bucket/key.csv or .parquet, or an s3:// prefix (every such file under it).
        output_uri: Output file or folder; empty writes <name>.predictions.<ext> beside each input.
        model_name: Folder of the model in the bucket.
        bucket: Bucket holding the model.
        model_version: production, or v<N> for a published version.
        key_columns: Comma-separated input columns copied to the output; empty writes the row number.
        on_bad_row: fail (nothing is written) or reject (bad rows go to <name>.rejects.csv with the reason).
        chunk_rows: Rows read and scored at a time.
        minio_endpoint: host:port of MinIO/S3 (seaweedfs.kubeflow:9000 on Kubeflow 2.16 and later).
        minio_secure: Use TLS to reach the object store.
        minio_secret: Kubernetes Secret (keys accesskey, secretkey) whose keys may read the model and data and
            write the outputs.
    """
    scored = batch_predict(input_uri=input_uri, output_uri=output_uri, model_name=model_name, bucket=bucket,
                           model_version=model_version, key_columns=key_columns, on_bad_row=on_bad_row,
                           chunk_rows=chunk_rows, minio_endpoint=minio_endpoint, minio_secure=minio_secure)
    # Input files and "production" change under the same names: never answer from cache.
    with_bucket_access(sized(scored), minio_secret).set_caching_options(False)


def compile_pipeline(output: str | Path = PACKAGE_PATH) -> Path:
    """Write the batch-scoring pipeline's YAML (default: the committed one).

    Args:
        output: where to write it.

    Returns:
        Its path.
    """
    return compiling.compile_pipeline(batch_scoring_pipeline, output)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipelines.batch_scoring_pipeline [--output PATH]``: compile it.

    Args:
        argv: the command line without the program name (default sys.argv[1:]).

    Returns:
        The exit status (0).
    """
    return compiling.main(batch_scoring_pipeline, PIPELINE_NAME, PACKAGE_PATH, argv)


if __name__ == "__main__":
    sys.exit(main())
