"""Push: contract metadata, versioning that never overwrites, production moved last, nothing on failure."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil

import joblib
import pytest

from components import evaluate, push
from components.errors import ObjectStoreAccessDenied, ObjectStoreUnreachable, PushError
from components.objectstore import ObjectStore, StoreSettings
from pipelines.local.s3server import free_port

NOW = dt.datetime(2026, 11, 25, 17, 40, tzinfo=dt.timezone.utc)
CONTRACT_KEYS = {
    "format_version", "model_name", "version", "framework", "sklearn_version", "model_file", "sha256", "task",
    "estimator", "hyperparameters", "schema", "metrics", "primary_metric", "data_source", "run_id", "created_at",
    "training_seconds",
}


@pytest.fixture
def evaluated(diabetes, diabetes_rf, tmp_path):
    """An evaluation that says deploy (no store: no production to compare with)."""
    evaluate.run(diabetes.test, diabetes.schema, diabetes_rf, 0.2, "m", "models", None, diabetes.source, 42, 0.2,
                 tmp_path / "evaluation.json", tmp_path / "report.md")
    return tmp_path / "evaluation.json"


def do_push(store, bucket, diabetes, model_dir, evaluation, model_name="m"):
    return push.run(model_dir, diabetes.schema, evaluation, model_name, bucket, store, "run-1", NOW)


def everything(s3_server, bucket: str) -> dict[str, bytes]:
    """What the server holds, read from its data folder (rclone keeps objects as plain files)."""
    root = s3_server.data_dir / bucket
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_metadata_follows_the_contract(diabetes, diabetes_rf, evaluated):
    model = (diabetes_rf / "model.joblib").read_bytes()
    metadata = push.build_metadata(
        "m", 3, model, json.loads((diabetes_rf / "training.json").read_text()),
        json.loads(diabetes.schema.read_text()), json.loads(evaluated.read_text()), "run-1", NOW)
    assert CONTRACT_KEYS <= set(metadata)
    assert metadata["sha256"] == hashlib.sha256(model).hexdigest()
    assert (metadata["format_version"], metadata["version"], metadata["model_file"]) == (1, 3, "model.joblib")
    assert metadata["created_at"] == "2026-11-25T17:40:00Z"
    assert metadata["hyperparameters"] == {"n_estimators": 100, "random_state": 42}
    assert metadata["primary_metric"]["name"] == "r2" and metadata["data_source"] == "sklearn:diabetes"
    assert [f["name"] for f in metadata["schema"]["features"]][:3] == ["age", "sex", "bmi"]


@pytest.mark.integration
def test_versions_then_production_and_sha_matches(s3_server, store, bucket, diabetes, diabetes_rf, evaluated):
    first = do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    assert (first.version, first.model_uri) == (1, f"s3://{bucket}/m/v1")
    assert first.production_uri == f"s3://{bucket}/m/production"
    objects = everything(s3_server, bucket)
    assert sorted(objects) == ["m/production/metadata.json", "m/production/model.joblib",
                               "m/v1/metadata.json", "m/v1/model.joblib"]
    metadata = json.loads(objects["m/production/metadata.json"])
    assert metadata["sha256"] == hashlib.sha256(objects["m/production/model.joblib"]).hexdigest()
    assert objects["m/v1/model.joblib"] == (diabetes_rf / "model.joblib").read_bytes()
    assert metadata["version"] == 1 and metadata["run_id"] == "run-1"

    second = do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    after = everything(s3_server, bucket)
    assert second.version == 2
    assert after["m/v1/metadata.json"] == objects["m/v1/metadata.json"]  # v1 untouched
    assert json.loads(after["m/production/metadata.json"])["version"] == 2


@pytest.mark.integration
def test_next_version_follows_the_highest_existing_one(store, bucket, diabetes, diabetes_rf, evaluated):
    store.ensure_bucket(bucket)
    store.put_bytes(bucket, "m/v7/model.joblib", b"someone else's")
    store.put_bytes(bucket, "m/vX/notes.txt", b"not a version")
    assert do_push(store, bucket, diabetes, diabetes_rf, evaluated).version == 8
    assert store.get_bytes(bucket, "m/v7/model.joblib") == b"someone else's"


@pytest.mark.integration
def test_pushed_model_loads_and_predicts(store, bucket, diabetes, diabetes_rf, evaluated, tmp_path):
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    (tmp_path / "m.joblib").write_bytes(store.get_bytes(bucket, "m/production/model.joblib"))
    model = joblib.load(tmp_path / "m.joblib")
    assert model.predict([[0.0] * 10]).shape == (1,)


@pytest.mark.integration
def test_refuses_when_evaluation_said_no(store, bucket, diabetes, diabetes_rf, tmp_path):
    evaluate.run(diabetes.test, diabetes.schema, diabetes_rf, 0.99, "m", "models", None, diabetes.source, 42, 0.2,
                 tmp_path / "evaluation.json", tmp_path / "report.md")
    with pytest.raises(PushError, match="evaluation says not to deploy .*below the threshold"):
        do_push(store, bucket, diabetes, diabetes_rf, tmp_path / "evaluation.json")
    assert not store.bucket_exists(bucket)


@pytest.mark.integration
def test_second_model_file_is_refused_before_any_write(store, bucket, diabetes, diabetes_rf, evaluated, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(diabetes_rf, folder)
    (folder / "old.pkl").write_bytes(b"x")
    expected = "must hold exactly one model file model.joblib, found ['model.joblib', 'old.pkl']"
    with pytest.raises(PushError, match=re.escape(expected)):
        do_push(store, bucket, diabetes, folder, evaluated)
    assert not store.bucket_exists(bucket)


@pytest.mark.integration
def test_wrong_credentials_push_nothing(s3_server, store, bucket, diabetes, diabetes_rf, evaluated):
    wrong = ObjectStore(StoreSettings.from_env(env={**s3_server.env(), "MINIO_ACCESS_KEY": "nobody"}))
    with pytest.raises(ObjectStoreAccessDenied, match="MINIO_ACCESS_KEY"):
        do_push(wrong, bucket, diabetes, diabetes_rf, evaluated)
    assert not store.bucket_exists(bucket)


def test_unreachable_endpoint_is_named(diabetes, diabetes_rf, evaluated):
    endpoint = f"127.0.0.1:{free_port()}"
    store = ObjectStore(StoreSettings.from_env(endpoint, False, env={"MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "b"}))
    with pytest.raises(ObjectStoreUnreachable, match=endpoint):
        do_push(store, "models", diabetes, diabetes_rf, evaluated)


@pytest.mark.parametrize(
    "bucket, model_name, expected",
    [("Models", "m", "bucket 'Models' is not a valid bucket name"),
     ("ab", "m", "bucket 'ab'"),
     ("models", "a/b", "model_name 'a/b' is invalid"),
     ("models", "", "model_name '' is invalid")],
)
def test_bad_names_fail_before_touching_the_store(diabetes, diabetes_rf, evaluated, bucket, model_name, expected):
    # An unreachable store: the check must fail first, without a connection attempt.
    store = ObjectStore(StoreSettings.from_env(f"127.0.0.1:{free_port()}", False,
                                               env={"MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "b"}))
    with pytest.raises(PushError, match=re.escape(expected)):
        do_push(store, bucket, diabetes, diabetes_rf, evaluated, model_name=model_name)
