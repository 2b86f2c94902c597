"""Push on the session's rclone server: contract metadata and lineage, the layout, failures of real writes.

rclone ignores conditional writes, so these pushes run under the registry lock (REGISTRY_LOCK_FILE,
set by s3_env). The failure tests use a real ObjectStore with one operation failing (FlakyStore).
Every write and copy with conditional-write semantics, concurrent writers and the retry bounds are
pinned without a server in test_registry.py (MemStore).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import shutil

import joblib
import pytest
import urllib3
from minio.error import S3Error

from components import evaluate, push
from components.datasets import read_dataset
from components.errors import ObjectStoreAccessDenied, ObjectStoreUnreachable, PipelineError, PushError
from components.objectstore import ObjectStore, StoreSettings
from components.registry import Registry
from pipelines.local.s3server import free_port

NOW = dt.datetime(2026, 11, 25, 17, 40, tzinfo=dt.timezone.utc)
CONTRACT_KEYS = {
    "format_version", "model_name", "version", "framework", "sklearn_version", "model_file", "sha256", "task",
    "estimator", "hyperparameters", "schema", "metrics", "primary_metric", "data_source", "run_id", "created_at",
    "training_seconds", "lineage",
}
LINEAGE_KEYS = {"data_sha256", "fingerprint", "git_commit", "run_id", "params", "evaluated_against", "compared_with"}


def do_push(store, bucket, diabetes, model_dir, evaluation, model_name="m"):
    return push.run(model_dir=model_dir, schema_path=diabetes.schema, evaluation_path=evaluation,
                    model_name=model_name, bucket=bucket, store=store, run_id="run-1", now=NOW)


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
    lineage = metadata["lineage"]
    assert LINEAGE_KEYS <= set(lineage)
    assert lineage["data_sha256"] == hashlib.sha256(diabetes.train.read_bytes()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{40}|unknown", lineage["git_commit"])
    assert lineage["run_id"] == "run-1"
    assert lineage["params"]["estimator"] == "random_forest" and lineage["params"]["seed"] == 42
    assert lineage["params"]["test_fraction"] == 0.2 and lineage["params"]["target"] == "target"


def test_git_commit_is_unknown_outside_git(monkeypatch, tmp_path):
    monkeypatch.delenv(push.GIT_COMMIT_ENV, raising=False)
    monkeypatch.setattr(push, "_PROJECT_ROOT", tmp_path)  # not a checkout
    assert push.git_commit() == "unknown"
    monkeypatch.setenv(push.GIT_COMMIT_ENV, "abc123")
    assert push.git_commit() == "abc123"


@pytest.mark.integration
def test_versions_then_production_and_sha_matches(s3_server, store, bucket, diabetes, diabetes_rf, second_model,
                                                  evaluated):
    first = do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    assert (first.version, first.model_uri) == (1, f"s3://{bucket}/m/v1/")
    assert first.production_uri == f"s3://{bucket}/m/production/"
    objects = everything(s3_server, bucket)
    assert sorted(objects) == ["m/history/00000001.json", "m/production.json", "m/production/metadata.json",
                               "m/production/model.joblib", "m/production/model.skops", "m/v1/claim.json",
                               "m/v1/metadata.json", "m/v1/model.joblib", "m/v1/model.skops"]
    metadata = json.loads(objects["m/production/metadata.json"])
    assert metadata["sha256"] == hashlib.sha256(objects["m/production/model.joblib"]).hexdigest()
    assert metadata["skops_sha256"] == hashlib.sha256(objects["m/production/model.skops"]).hexdigest()
    assert objects["m/v1/model.skops"] == objects["m/production/model.skops"]
    assert objects["m/v1/model.joblib"] == (diabetes_rf / "model.joblib").read_bytes()
    assert metadata["version"] == 1 and metadata["run_id"] == "run-1"
    pointer = json.loads(objects["m/production.json"])
    assert (pointer["version"], pointer["sha256"], pointer["seq"]) == (1, metadata["sha256"], 1)
    assert {"moved_at", "by", "reason"} <= set(pointer) and pointer["by"] == "run run-1"
    assert json.loads(objects["m/history/00000001.json"]) == pointer

    # The same data and parameters again: nothing new to learn, nothing written.
    same = do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    assert (same.version, same.promoted, same.nothing_new) == (1, False, True)
    assert "nothing new to learn" in same.reason
    assert everything(s3_server, bucket) == objects

    second = do_push(store, bucket, diabetes, second_model, evaluated)
    after = everything(s3_server, bucket)
    assert second.version == 2 and second.promoted
    assert after["m/v1/metadata.json"] == objects["m/v1/metadata.json"]  # v1 untouched
    assert json.loads(after["m/production/metadata.json"])["version"] == 2
    assert json.loads(after["m/v2/metadata.json"])["lineage"]["compared_with"] == 1
    assert json.loads(after["m/history/00000002.json"])["previous"] == 1
    assert after["m/history/00000001.json"] == objects["m/history/00000001.json"]  # never rewritten


@pytest.mark.integration
def test_a_partial_version_is_never_counted_and_is_removed_by_the_next_push(store, bucket, diabetes, diabetes_rf,
                                                                           evaluated, caplog):
    store.ensure_bucket(bucket)
    store.put_bytes(bucket, "m/v7/model.joblib", b"a truncated upload, no metadata")
    store.put_bytes(bucket, "m/vX/notes.txt", b"not a version")
    with caplog.at_level(logging.WARNING, logger="components.registry"):
        assert do_push(store, bucket, diabetes, diabetes_rf, evaluated).version == 8  # numbers are never reused
    assert "removed partial v7 (no metadata.json)" in caplog.text
    assert store.list_keys(bucket, "m/v7/") == ["m/v7/claim.json"]  # a tombstone keeps 7 from being reused
    assert json.loads(store.get_bytes(bucket, "m/v7/claim.json"))["abandoned"] is True
    assert store.get_bytes(bucket, "m/vX/notes.txt") == b"not a version"


@pytest.mark.integration
def test_pushed_model_predicts_exactly_as_the_trained_one(store, bucket, diabetes, diabetes_rf, evaluated, tmp_path):
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    (tmp_path / "m.joblib").write_bytes(store.get_bytes(bucket, "m/production/model.joblib"))
    x, _ = read_dataset(diabetes.test, json.loads(diabetes.schema.read_text()))
    pushed = joblib.load(tmp_path / "m.joblib").predict(x)
    assert pushed.shape == (len(x),)
    assert pushed.tolist() == joblib.load(diabetes_rf / "model.joblib").predict(x).tolist()


@pytest.mark.integration
def test_refuses_when_evaluation_said_no(store, bucket, diabetes, diabetes_rf, tmp_path):
    evaluate.run(test_path=diabetes.test, schema_path=diabetes.schema, model_dir=diabetes_rf, threshold=0.99,
                 model_name="m", bucket="models", store=None, data_source=diabetes.source, seed=42, test_fraction=0.2,
                 evaluation_path=tmp_path / "evaluation.json", report_path=tmp_path / "report.md")
    with pytest.raises(PushError, match="evaluation says not to deploy .*below the threshold"):
        do_push(store, bucket, diabetes, diabetes_rf, tmp_path / "evaluation.json")
    assert not store.bucket_exists(bucket)


@pytest.mark.integration
@pytest.mark.parametrize("extra", ["old.pkl", "backup.pickle", "other.joblib"])
def test_a_folder_kserves_sklearn_runtime_would_refuse_is_refused_before_any_write(
        store, bucket, diabetes, diabetes_rf, evaluated, tmp_path, extra):
    folder = tmp_path / "model"
    shutil.copytree(diabetes_rf, folder)
    (folder / extra).write_bytes(b"x")
    found = sorted(["model.joblib", extra])
    expected = f"must hold exactly one model file model.joblib, found {found}"
    with pytest.raises(PushError, match=re.escape(expected)):
        do_push(store, bucket, diabetes, folder, evaluated)
    assert not store.bucket_exists(bucket)


def test_a_model_saved_under_another_suffix_is_refused(diabetes, diabetes_rf, evaluated, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(diabetes_rf, folder)
    (folder / "model.joblib").rename(folder / "model.pkl")
    with pytest.raises(PushError, match=re.escape("found ['model.pkl']")):
        do_push(None, "models", diabetes, folder, evaluated)  # refused before the store is needed


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


class FlakyStore(ObjectStore):
    """A real ObjectStore whose `method` fails on the key ending with `key_suffix`.

    landed=True fails after the operation reached the server (an answer lost on the way back),
    landed=False before it. times: how many matching calls fail.
    """

    def __init__(self, settings: StoreSettings, method: str, key_suffix: str, landed: bool = False,
                 times: int = 1) -> None:
        super().__init__(settings)
        self.method, self.key_suffix, self.landed, self.left = method, key_suffix, landed, times

    def _flaky(self, method: str, key: str, operation):
        hit = self.left > 0 and method == self.method and key.endswith(self.key_suffix)
        if hit:
            self.left -= 1
            if not self.landed:
                raise ObjectStoreUnreachable(f"injected: connection lost before {method} {key}")
        result = operation()
        if hit:
            raise ObjectStoreUnreachable(f"injected: answer to {method} {key} lost")
        return result

    def put_bytes(self, bucket, key, data, content_type="application/octet-stream", if_absent=False, if_match=None):
        return self._flaky("put", key, lambda: super(FlakyStore, self).put_bytes(bucket, key, data, content_type,
                                                                                 if_absent, if_match))

    def copy(self, bucket, source_key, target_key):
        return self._flaky("copy", target_key, lambda: super(FlakyStore, self).copy(bucket, source_key, target_key))


def assert_sound(store: ObjectStore, bucket: str, version: int | None, model: bytes | None = None) -> Registry:
    """What readers get: production.json names a complete `version` (None: no production), history agrees."""
    registry = Registry(store, bucket, "m")
    pointer = registry.current()
    if version is None:
        assert pointer is None
        return registry
    assert pointer.version == version
    info = registry.complete_version(version)  # verified: metadata names the model's sha256
    assert info.metadata["sha256"] == pointer.sha256
    if model is not None:
        assert store.get_bytes(bucket, f"m/v{version}/model.joblib") == model
    return registry


def assert_production_copy(store: ObjectStore, bucket: str, version: int) -> None:
    consistent, state = Registry(store, bucket, "m").production_state()
    assert consistent, state
    assert json.loads(store.get_bytes(bucket, "m/production/metadata.json"))["version"] == version


@pytest.fixture
def second_model(ridge_models):
    """Another model than diabetes_rf, so that v1 and v2 differ byte for byte."""
    return ridge_models[1]


@pytest.fixture
def third_model(ridge_models):
    return ridge_models[2]


# Each write and copy of a second push, failing before it lands and after (answer lost).
POINTS = [("put", "v2/claim.json"), ("put", "v2/model.joblib"), ("put", "v2/metadata.json"),
          ("put", "m/production.json"), ("put", "history/00000002.json"),
          ("copy", "production/model.joblib"), ("copy", "production/metadata.json")]


@pytest.mark.integration
@pytest.mark.parametrize("landed", [False, True], ids=["before", "landed"])
@pytest.mark.parametrize("method, key_suffix", POINTS, ids=[key for _, key in POINTS])
def test_a_push_that_fails_at_any_write_leaves_readers_on_a_complete_version_and_the_next_push_repairs(
        s3_env, bucket, diabetes, diabetes_rf, second_model, third_model, evaluated, method, key_suffix, landed):
    store = ObjectStore.from_env()
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    flaky = FlakyStore(store.settings, method, key_suffix, landed)
    try:
        result = do_push(flaky, bucket, diabetes, second_model, evaluated)
    except PipelineError as exc:
        assert "injected" in str(exc)  # the cause is named, not swallowed
        result = None
    if result is None:
        moved = key_suffix == "m/production.json" and landed  # the swap landed, its answer did not
        assert_sound(store, bucket, 2 if moved else 1)
    else:  # a lost history entry or a copy that failed once is retried: the push went through
        assert result.version == 2 and result.promoted
        assert_sound(store, bucket, 2, (second_model / "model.joblib").read_bytes())
    following = do_push(store, bucket, diabetes, third_model, evaluated)
    assert following.promoted
    registry = assert_sound(store, bucket, following.version, (third_model / "model.joblib").read_bytes())
    assert_production_copy(store, bucket, following.version)
    assert [v.number for v in registry.versions() if not v.complete] == [
        n for n in registry.numbers() if store.list_keys(bucket, f"m/v{n}/") == [f"m/v{n}/claim.json"]]
    history = registry.history()
    assert [entry["seq"] for entry in history] == list(range(1, registry.current().seq + 1))  # no gap
    assert history[-1]["version"] == following.version


@pytest.mark.integration
def test_a_production_copy_that_keeps_failing_is_reported_and_repaired_later(
        s3_env, bucket, diabetes, diabetes_rf, second_model, evaluated):
    store = ObjectStore.from_env()
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    flaky = FlakyStore(store.settings, "copy", "production/metadata.json", landed=False, times=5)
    with pytest.raises(PushError, match=rf"production.json names v2, but s3://{bucket}/m/production/ could not be "
                                        r"refreshed .*the next push, `make promote` or `make models` repairs it"):
        do_push(flaky, bucket, diabetes, second_model, evaluated)
    registry = assert_sound(store, bucket, 2)
    consistent, state = registry.production_state()
    assert not consistent and "does not hold v2" in state
    assert registry.sync_production() is True  # what `make models` does
    assert_production_copy(store, bucket, 2)


def stale_evaluation(evaluated, tmp_path, worse_by: float):
    """An evaluation made before a better model reached production: it still says deploy."""
    evaluation = json.loads(evaluated.read_text())
    evaluation["primary_metric"]["value"] -= worse_by
    path = tmp_path / "stale-evaluation.json"
    path.write_text(json.dumps(evaluation))
    return path


@pytest.mark.integration
def test_production_that_got_better_meanwhile_is_not_replaced(s3_server, store, bucket, diabetes, diabetes_rf,
                                                              second_model, evaluated, tmp_path, caplog):
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)  # a concurrent run promoted this one first
    stale = stale_evaluation(evaluated, tmp_path, worse_by=0.05)
    with caplog.at_level(logging.WARNING, logger="components.push"):
        result = do_push(store, bucket, diabetes, second_model, stale)
    assert (result.version, result.promoted) == (2, False)
    assert "is worse than production v1" in result.reason
    assert "production NOT moved" in caplog.text and f"s3://{bucket}/m/v2/ is kept" in caplog.text
    assert_sound(store, bucket, 1, (diabetes_rf / "model.joblib").read_bytes())
    assert_production_copy(store, bucket, 1)
    assert Registry(store, bucket, "m").complete_version(2).complete  # kept, complete


@pytest.mark.integration
def test_an_equal_score_still_moves_production(s3_server, store, bucket, diabetes, diabetes_rf, second_model,
                                               evaluated):
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    result = do_push(store, bucket, diabetes, second_model, evaluated)  # same recorded score: "not worse"
    assert result.promoted and "not worse than production v1" in result.reason
    assert_sound(store, bucket, 2)
    assert_production_copy(store, bucket, 2)


CONCURRENT_RUNS, TRIALS = 3, 20


@pytest.mark.integration
def test_concurrent_pushes_on_the_local_store_lose_and_mix_nothing(s3_env, diabetes, ridge_models, evaluated):
    """3 pushes released together, 20 times, on rclone (which ignores If-None-Match): the lock keeps them apart."""
    import threading
    import uuid

    for trial in range(TRIALS):
        bucket = f"t-race-{uuid.uuid4().hex[:8]}"
        results, errors = {}, []
        barrier = threading.Barrier(CONCURRENT_RUNS)

        def one(index: int) -> None:
            try:
                barrier.wait()
                results[index] = push.run(model_dir=ridge_models[index], schema_path=diabetes.schema,
                                          evaluation_path=evaluated, model_name="m", bucket=bucket,
                                          store=ObjectStore.from_env(), run_id=f"run-{index}", now=NOW)
            except Exception as exc:  # reported below
                errors.append(exc)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(CONCURRENT_RUNS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors, (trial, errors)
        assert sorted(r.version for r in results.values()) == [1, 2, 3], trial
        store = ObjectStore.from_env()
        for index, result in results.items():  # each run's report matches the store
            metadata = json.loads(store.get_bytes(bucket, f"m/v{result.version}/metadata.json"))
            assert metadata["run_id"] == f"run-{index}", trial
            assert store.get_bytes(bucket, f"m/v{result.version}/model.joblib") == \
                (ridge_models[index] / "model.joblib").read_bytes(), trial
        registry = Registry(store, bucket, "m")
        pointer = registry.current()
        assert [r.version for r in results.values() if r.promoted][-1:] != [] and pointer.version in \
            [r.version for r in results.values() if r.promoted], trial
        assert [e["seq"] for e in registry.history()] == list(range(1, pointer.seq + 1)), trial
        assert registry.production_state()[0], trial
