"""Push: contract metadata, versions never overwritten, the gate re-checked, production never half-moved.

The failure tests use a real ObjectStore on the session's S3 server with one operation failing
once (FlakyStore), and concurrent runs are played by writing to the same server mid-push.
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
from components.errors import ObjectStoreAccessDenied, ObjectStoreUnreachable, PushError
from components.objectstore import ObjectStore, StoreSettings, translate
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
    assert (first.version, first.model_uri) == (1, f"s3://{bucket}/m/v1/")
    assert first.production_uri == f"s3://{bucket}/m/production/"
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
def test_pushed_model_predicts_exactly_as_the_trained_one(store, bucket, diabetes, diabetes_rf, evaluated, tmp_path):
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    (tmp_path / "m.joblib").write_bytes(store.get_bytes(bucket, "m/production/model.joblib"))
    x, _ = read_dataset(diabetes.test, json.loads(diabetes.schema.read_text()))
    pushed = joblib.load(tmp_path / "m.joblib").predict(x)
    assert pushed.shape == (len(x),)
    assert pushed.tolist() == joblib.load(diabetes_rf / "model.joblib").predict(x).tolist()


@pytest.mark.integration
def test_refuses_when_evaluation_said_no(store, bucket, diabetes, diabetes_rf, tmp_path):
    evaluate.run(diabetes.test, diabetes.schema, diabetes_rf, 0.99, "m", "models", None, diabetes.source, 42, 0.2,
                 tmp_path / "evaluation.json", tmp_path / "report.md")
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
    """A real ObjectStore whose `method` fails once, on the key ending with `key_suffix`.

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

    def put_bytes(self, bucket, key, data, content_type="application/octet-stream", if_absent=False):
        return self._flaky("put", key, lambda: super(FlakyStore, self).put_bytes(bucket, key, data, content_type,
                                                                                 if_absent))

    def copy(self, bucket, source_key, target_key):
        return self._flaky("copy", target_key, lambda: super(FlakyStore, self).copy(bucket, source_key, target_key))


def assert_production_serves(s3_server, bucket: str, version: int | None, model: bytes | None = None) -> dict:
    """production/ is consistent (its metadata describes its model) and holds `version` (None: nothing)."""
    files = everything(s3_server, bucket)
    if version is None:
        assert not [name for name in files if name.startswith("m/production/")]
        return files
    metadata = json.loads(files["m/production/metadata.json"])
    assert metadata["sha256"] == hashlib.sha256(files["m/production/model.joblib"]).hexdigest()
    assert metadata["version"] == version
    assert files["m/production/model.joblib"] == files[f"m/v{version}/model.joblib"]
    if model is not None:
        assert files["m/production/model.joblib"] == model
    return files


def assert_no_half_version(files: dict[str, bytes]) -> None:
    """Every v<N> folder holds both files or nothing at all."""
    folders = {name.split("/")[1] for name in files if re.match(r"m/v\d+/", name)}
    for folder in folders:
        assert {f"m/{folder}/model.joblib", f"m/{folder}/metadata.json"} <= set(files), folder


@pytest.fixture
def second_model(diabetes, tmp_path_factory):
    """A different model (another seed), so that v1 and v2 differ byte for byte."""
    from components import train

    folder = tmp_path_factory.mktemp("second")
    train.run(diabetes.train, diabetes.schema, folder, "random_forest", '{"n_estimators": 20}', 7)
    return folder


@pytest.mark.integration
@pytest.mark.parametrize(
    "method, key_suffix, landed, expected",
    [
        ("put", "v2/model.joblib", False, "s3://{bucket}/m/v2/ is not left half-written"),
        ("put", "v2/model.joblib", True, "s3://{bucket}/m/v2/ is not left half-written"),
        ("put", "v2/metadata.json", False, "s3://{bucket}/m/v2/ is not left half-written"),
        ("put", "v2/metadata.json", True, "s3://{bucket}/m/v2/ is not left half-written"),
        ("copy", "production/model.joblib", False, "production was restored to v1"),
        ("copy", "production/model.joblib", True, "production was restored to v1"),
        ("copy", "production/metadata.json", False, "production was restored to v1"),
        ("copy", "production/metadata.json", True, "production was restored to v1"),
    ],
)
def test_a_push_that_dies_midway_leaves_production_serving_the_old_version(
        s3_server, s3_env, bucket, diabetes, diabetes_rf, second_model, evaluated, method, key_suffix, landed,
        expected):
    store = ObjectStore.from_env()
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    v1_model = (diabetes_rf / "model.joblib").read_bytes()
    flaky = FlakyStore(store.settings, method, key_suffix, landed)
    with pytest.raises(PushError) as caught:
        do_push(flaky, bucket, diabetes, second_model, evaluated)
    assert expected.format(bucket=bucket) in str(caught.value)
    assert "injected" in str(caught.value)  # the cause is named, not swallowed
    files = assert_production_serves(s3_server, bucket, 1, v1_model)
    assert_no_half_version(files)
    # A failed promotion keeps its complete v2; a failed version write leaves v2 free. Either way
    # the next push goes through and production follows it.
    following = 3 if method == "copy" else 2
    assert do_push(store, bucket, diabetes, second_model, evaluated).version == following
    assert_production_serves(s3_server, bucket, following, (second_model / "model.joblib").read_bytes())


@pytest.mark.integration
def test_a_first_promotion_that_dies_midway_leaves_no_production_at_all(s3_server, s3_env, bucket, diabetes,
                                                                       diabetes_rf, evaluated):
    flaky = FlakyStore(ObjectStore.from_env().settings, "copy", "production/metadata.json", landed=False)
    with pytest.raises(PushError, match="production was removed again \\(there was none before\\); "
                                        f"s3://{bucket}/m/v1/ is complete and kept"):
        do_push(flaky, bucket, diabetes, diabetes_rf, evaluated)
    files = assert_production_serves(s3_server, bucket, None)
    assert sorted(files) == ["m/v1/metadata.json", "m/v1/model.joblib"]


@pytest.mark.integration
def test_a_failed_restore_says_what_to_do_by_hand(s3_env, bucket, diabetes, diabetes_rf, second_model, evaluated):
    store = ObjectStore.from_env()
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    flaky = FlakyStore(store.settings, "copy", "production/model.joblib", times=2)  # the move and its undo
    with pytest.raises(PushError, match=r"production could NOT be restored .*injected.*copy the previous v<M>/ "
                                        rf"into s3://{bucket}/m/production/ by hand"):
        do_push(flaky, bucket, diabetes, second_model, evaluated)


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
    files = assert_production_serves(s3_server, bucket, 1, (diabetes_rf / "model.joblib").read_bytes())
    assert files["m/v2/model.joblib"] == (second_model / "model.joblib").read_bytes()  # kept, complete
    assert_no_half_version(files)


@pytest.mark.integration
def test_an_equal_score_still_moves_production(s3_server, store, bucket, diabetes, diabetes_rf, second_model,
                                               evaluated):
    do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    result = do_push(store, bucket, diabetes, second_model, evaluated)  # same recorded score: "not worse"
    assert result.promoted and "not worse than production v1" in result.reason
    assert_production_serves(s3_server, bucket, 2)


class RacingStore(ObjectStore):
    """A real ObjectStore with a concurrent run that writes a complete v<N> just before this one does.

    precondition=True: the other run wins on a server that enforces If-None-Match (MinIO, AWS),
    which answers this run's write with 412. rclone ignores the header, so that answer is made
    here from the S3Error MinIO sends. precondition=False: the other run's v<N> lands between
    listing the versions and writing (what the existence check catches on any store).
    """

    def __init__(self, settings: StoreSettings, precondition: bool, races: int = 1) -> None:
        super().__init__(settings)
        self.precondition, self.races = precondition, races

    def _other_run_takes(self, bucket: str, prefix: str) -> None:
        self.races -= 1
        super().put_bytes(bucket, prefix + "model.joblib", b"the other run's model")
        super().put_bytes(bucket, prefix + "metadata.json", b'{"version": "theirs"}')

    def list_children(self, bucket, prefix):
        children = super().list_children(bucket, prefix)
        if not self.precondition and self.races > 0 and prefix == "m/":
            taken = max([int(c[1:-1]) for c in children if re.fullmatch(r"v\d+/", c)] or [0]) + 1
            self._other_run_takes(bucket, f"m/v{taken}/")
        return children

    def put_bytes(self, bucket, key, data, content_type="application/octet-stream", if_absent=False):
        if self.precondition and self.races > 0 and if_absent and key.endswith("/model.joblib"):
            self._other_run_takes(bucket, key.removesuffix("model.joblib"))
            body = b"<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you " \
                   b"specified did not hold</Message></Error>"
            raise translate(S3Error.fromxml(urllib3.HTTPResponse(body=body, status=412)), "write",
                            self.uri(bucket, key), self.settings.url)
        return super().put_bytes(bucket, key, data, content_type, if_absent)


@pytest.mark.integration
@pytest.mark.parametrize("precondition", [True, False], ids=["412-from-if-none-match", "seen-by-listing"])
def test_a_version_taken_by_a_concurrent_run_is_left_alone_and_the_next_is_used(
        s3_server, s3_env, bucket, diabetes, diabetes_rf, evaluated, caplog, precondition):
    store = RacingStore(ObjectStore.from_env().settings, precondition)
    with caplog.at_level(logging.WARNING, logger="components.push"):
        result = do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    assert result.version == 2 and result.promoted
    assert "v1 was taken by a concurrent run" in caplog.text and "trying v2" in caplog.text
    files = everything(s3_server, bucket)
    assert files["m/v1/model.joblib"] == b"the other run's model"  # never overwritten
    assert json.loads(files["m/v2/metadata.json"])["version"] == 2
    assert_production_serves(s3_server, bucket, 2, (diabetes_rf / "model.joblib").read_bytes())


@pytest.mark.integration
def test_version_retries_are_bounded(s3_server, s3_env, bucket, diabetes, diabetes_rf, evaluated):
    store = RacingStore(ObjectStore.from_env().settings, precondition=True, races=push.MAX_VERSION_ATTEMPTS)
    with pytest.raises(PushError, match=rf"gave up after {push.MAX_VERSION_ATTEMPTS} attempts \(the last v5\)"):
        do_push(store, bucket, diabetes, diabetes_rf, evaluated)
    assert_production_serves(s3_server, bucket, None)
