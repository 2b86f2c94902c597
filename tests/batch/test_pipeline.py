"""The batch-scoring pipeline: committed YAML is current, the step gets the Secret, and it runs on kfp.local."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from components.kfp_components import PIPELINE_IMAGE
from pipelines import params, upload
from pipelines.batch_scoring_pipeline import PACKAGE_PATH, compile_pipeline
from pipelines.local.runner import run_compiled
from pipelines.training_pipeline import MINIO_SECRET

from .conftest import MODEL_NAME, publish


def load():
    spec, platform = yaml.safe_load_all(PACKAGE_PATH.read_text())
    return spec, platform


def test_committed_yaml_matches_a_fresh_compile(tmp_path):
    fresh = compile_pipeline(tmp_path / "fresh.yaml")
    assert PACKAGE_PATH.read_text() == fresh.read_text(), "run `make compile` and commit the YAML"


def test_the_step_runs_in_the_project_image_uncached_with_the_secret():
    spec, platform = load()
    assert {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()} == {PIPELINE_IMAGE}
    task = spec["root"]["dag"]["tasks"]["batch-predict"]
    assert not task.get("cachingOptions", {}).get("enableCache")
    (secret,) = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-batch-predict"]["secretAsEnv"]
    assert secret["secretNameParameter"]["componentInputParameter"] == "minio_secret"
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters["minio_secret"]["defaultValue"] == MINIO_SECRET
    assert all(p.get("description") for p in parameters.values())


@pytest.mark.parametrize("override, match", [
    ("on_bad_row=skip", "on_bad_row is 'skip'"),
    ("input_uri=/tmp/x.csv", "parameter input_uri='/tmp/x.csv' is invalid: expected s3://"),
    ("model_version=latest", "model_version 'latest' is invalid"),
])
def test_upload_checks_batch_parameters_before_connecting(override, match, capsys):
    assert upload.main(["--host", "http://127.0.0.1:1", "--pipeline", "batch-scoring", "--run",
                        "--param", override]) == 2
    assert match in capsys.readouterr().err


def test_upload_knows_every_pipeline():
    assert set(upload.PIPELINES) == {"sklearn-training", "batch-scoring", "sklearn-monitor"}
    assert upload.PIPELINES["batch-scoring"].package == PACKAGE_PATH
    params.check_batch(params.effective({}, PACKAGE_PATH))  # the defaults pass


@pytest.mark.integration
def test_component_scores_a_file_on_kfp_local(s3_env, store, bucket, regressor_dir, regressor, diabetes_frame,
                                              tmp_path):
    publish(store, bucket, regressor_dir, f"{MODEL_NAME}/production")
    x = diabetes_frame.drop(columns="target")
    store.put_bytes(bucket, "in/users.csv", x.to_csv(index=False).encode())
    values = params.effective({}, PACKAGE_PATH)
    values.update(input_uri=f"s3://{bucket}/in/users.csv", bucket=bucket, on_bad_row="reject",
                  minio_endpoint=s3_env["MINIO_ENDPOINT"], minio_secure=False)
    values.pop("minio_secret")  # cluster-only: kfp.local reads the keys from the environment
    run = run_compiled(PACKAGE_PATH, values, tmp_path / "runs")
    assert run.ok, run.error
    outputs = run.parameters("batch-predict")
    assert outputs["rows"] == len(x) and outputs["scored"] == len(x) and outputs["rejected"] == 0
    assert outputs["outputs"] == f"s3://{bucket}/in/users.predictions.csv"
    store.download_file(bucket, "in/users.predictions.csv", tmp_path / "out.csv")
    assert pd.read_csv(tmp_path / "out.csv")["predict"].tolist() == regressor.predict(x).tolist()
