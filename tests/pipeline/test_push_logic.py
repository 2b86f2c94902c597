"""Push's own checks and metadata without a server (MemStore): what it refuses before the first write.

test_push.py pins the same step against a real S3 server (integration); these pin, in the fast tier,
the decisions mutation testing found unpinned: a missing `deploy` key, a NaN metric, a non-UTC
clock, missing training or evaluation keys, and every field push derives for metadata.json.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import shutil
import subprocess
import time

import pytest

from components import push
from components.errors import PipelineError, PushError
from components.gate import fingerprint
from components.registry import Guard, Registry

from .memstore import MemStore

NOW = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)
BUCKET = "models"
TRAINING_KEYS = ("sklearn_version", "estimator", "hyperparameters", "training_seconds", "task")
EVALUATION_KEYS = ("metrics", "primary_metric", "data_source", "threshold", "task")


def records(diabetes, model_dir, evaluated) -> tuple[dict, dict, dict]:
    return (json.loads((model_dir / "training.json").read_text()), json.loads(diabetes.schema.read_text()),
            json.loads(evaluated.read_text()))


def push_with(tmp_path, diabetes, model_dir, evaluation: dict, store: MemStore, now=NOW) -> push.PushResult:
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(evaluation))
    return push.run(model_dir=model_dir, schema_path=diabetes.schema, evaluation_path=path, model_name="m",
                    bucket=BUCKET, store=store, run_id="run-7", now=now, guard=Guard())


def model_writes(store: MemStore) -> list[tuple[str, str]]:
    return [(op, key) for op, key in store.calls if op in ("put", "copy") and key.startswith("m/")]


@pytest.mark.parametrize("change", [{"deploy": False}, {"deploy": None}, {"deploy": 0}, "drop"])
def test_an_evaluation_that_does_not_say_deploy_is_refused_before_any_write(tmp_path, diabetes, ridge_models,
                                                                           evaluated, change):
    evaluation = json.loads(evaluated.read_text())
    assert evaluation["deploy"] is True  # the fixture says deploy: only the change below refuses
    if change == "drop":
        del evaluation["deploy"]
    else:
        evaluation.update(change)
    store = MemStore()
    with pytest.raises(PushError, match=r"evaluation says not to deploy \(.*\): refusing to push"):
        push_with(tmp_path, diabetes, ridge_models[0], evaluation, store)
    assert store.objects == {} and store.calls == []


def test_a_nan_metric_is_refused_before_any_write(tmp_path, diabetes, ridge_models, evaluated):
    evaluation = json.loads(evaluated.read_text())
    evaluation["metrics"] = {**evaluation["metrics"], "mae": math.nan}
    store = MemStore()
    with pytest.raises(PushError, match="metadata.json would not be valid JSON"):
        push_with(tmp_path, diabetes, ridge_models[0], evaluation, store)
    assert model_writes(store) == []


@pytest.mark.parametrize("missing", [("training", key) for key in TRAINING_KEYS]
                         + [("evaluation", key) for key in EVALUATION_KEYS])
def test_metadata_needs_every_training_and_evaluation_key(diabetes, ridge_models, evaluated, missing):
    training, schema, evaluation = records(diabetes, ridge_models[0], evaluated)
    where, key = missing
    del (training if where == "training" else evaluation)[key]
    with pytest.raises(PushError, match=f"training/evaluation records lack {key}$"):
        push.build_metadata("m", 1, b"model", training, schema, evaluation, "run-7", NOW)


def test_created_at_is_written_in_utc_whatever_the_clock_zone(diabetes, ridge_models, evaluated):
    training, schema, evaluation = records(diabetes, ridge_models[0], evaluated)
    plus_two = dt.datetime(2026, 12, 2, 10, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    metadata = push.build_metadata("m", 1, b"model", training, schema, evaluation, "run-7", plus_two)
    assert metadata["created_at"] == "2026-12-02T08:00:05Z"


def test_metadata_carries_what_push_derives(diabetes, ridge_models, evaluated, monkeypatch):
    monkeypatch.setenv(push.GIT_COMMIT_ENV, "c0ffee")
    training, schema, evaluation = records(diabetes, ridge_models[0], evaluated)
    evaluation = {**evaluation, "allow_schema_change": 1, "production": {"version": 4}}
    metadata = push.build_metadata("m", 6, b"model-bytes", training, schema, evaluation, "run-7", NOW,
                                   bucket=BUCKET, skops=b"skops-bytes")
    assert {k: metadata[k] for k in ("format_version", "model_name", "version", "framework", "model_file",
                                     "size_bytes", "skops_file", "run_id", "created_at")} == {
        "format_version": push.FORMAT_VERSION, "model_name": "m", "version": 6, "framework": "scikit-learn",
        "model_file": "model.joblib", "size_bytes": len(b"model-bytes"), "skops_file": "model.skops",
        "run_id": "run-7", "created_at": "2026-12-02T08:00:00Z"}
    assert metadata["sha256"] == hashlib.sha256(b"model-bytes").hexdigest()
    assert metadata["skops_sha256"] == hashlib.sha256(b"skops-bytes").hexdigest()
    for key in ("task", "estimator", "hyperparameters", "sklearn_version", "training_seconds"):
        assert metadata[key] == training[key], key
    for key in ("metrics", "primary_metric", "data_source", "split"):
        assert metadata[key] == evaluation[key], key
    assert metadata["schema"] == schema
    lineage = metadata["lineage"]
    split = evaluation["split"]
    assert lineage["fingerprint"] == fingerprint(training["data_sha256"], schema, training["estimator"],
                                                 training["hyperparameters"], split)
    assert (lineage["data_sha256"], lineage["git_commit"], lineage["run_id"]) == (training["data_sha256"],
                                                                                  "c0ffee", "run-7")
    assert (lineage["evaluated_against"], lineage["compared_with"]) == (4, None)
    assert lineage["params"] == {
        "source": evaluation["data_source"], "target": schema["target"]["name"], "task": training["task"],
        "test_fraction": split["test_fraction"], "seed": split["seed"], "missing_values": schema.get("missing_values"),
        "categorical_features": [f["name"] for f in schema["features"] if "categories" in f],
        "estimator": training["estimator"], "hyperparameters": training["hyperparameters"],
        "threshold": evaluation["threshold"], "model_name": "m", "bucket": BUCKET, "allow_schema_change": True}
    assert "skops_file" not in push.build_metadata("m", 6, b"x", training, schema, evaluation, "run-7", NOW)


def test_a_training_record_without_a_data_hash_has_no_fingerprint(diabetes, ridge_models, evaluated):
    training, schema, evaluation = records(diabetes, ridge_models[0], evaluated)
    training["data_sha256"] = ""
    lineage = push.build_metadata("m", 1, b"x", training, schema, evaluation, "run-7", NOW)["lineage"]
    assert lineage["fingerprint"] is None and lineage["params"]["allow_schema_change"] is False


def test_a_push_answers_what_it_wrote(tmp_path, diabetes, ridge_models, evaluated, caplog):
    store = MemStore()
    with caplog.at_level("INFO", logger="components.push"):
        pushed = push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    model = (ridge_models[0] / "model.joblib").read_bytes()
    # The step's log line names the version, the model's hash (its first 12 digits) and where production is.
    assert (f"pushed s3://models/m/v1/ (sha256 {hashlib.sha256(model).hexdigest()[:12]}); production now points "
            "at v1") in caplog.messages
    assert pushed == push.PushResult(1, "s3://models/m/v1/", "s3://models/m/production/",
                                     hashlib.sha256(model).hexdigest(), True, pushed.reason, False)
    assert "no production model yet" in pushed.reason
    stored = json.loads(store.objects[BUCKET]["m/v1/metadata.json"])
    assert stored["created_at"] == "2026-12-02T08:00:00Z" and stored["version"] == 1
    assert stored["lineage"]["compared_with"] is None
    second = push_with(tmp_path, diabetes, ridge_models[1], json.loads(evaluated.read_text()), store)
    assert (second.version, second.promoted, second.model_uri) == (2, True, "s3://models/m/v2/")
    assert json.loads(store.objects[BUCKET]["m/v2/metadata.json"])["lineage"]["compared_with"] == 1
    assert Registry(store, BUCKET, "m").current().version == 2


def _git(*args: str, cwd) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=cwd,
                          capture_output=True, text=True, check=True, timeout=30)
    return done.stdout.strip()


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A throw-away git repository with one commit, standing in for the project's checkout.

    A temporary repository rather than the project's own: mutation testing and unpacked copies run
    where the project is no checkout, and there this test must still pin git_commit down.
    """
    repo = tmp_path / "checkout"
    repo.mkdir()
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE"):
        monkeypatch.delenv(name, raising=False)
    _git("init", "-q", cwd=repo)
    _git("commit", "-q", "--allow-empty", "-m", "one", cwd=repo)
    monkeypatch.delenv(push.GIT_COMMIT_ENV, raising=False)
    monkeypatch.setattr(push, "_PROJECT_ROOT", repo)
    return repo


def test_git_commit_is_the_checkout_s_head(checkout):
    head = _git("rev-parse", "HEAD", cwd=checkout)
    assert re.fullmatch(r"[0-9a-f]{40}", head)
    assert push.git_commit() == head
    _git("commit", "-q", "--allow-empty", "-m", "two", cwd=checkout)  # follows HEAD, not a cached value
    assert push.git_commit() == _git("rev-parse", "HEAD", cwd=checkout) != head


def test_git_commit_prefers_the_image_s_variable_and_ignores_it_empty(checkout, monkeypatch):
    monkeypatch.setenv(push.GIT_COMMIT_ENV, "abc123")
    assert push.git_commit() == "abc123"
    monkeypatch.setenv(push.GIT_COMMIT_ENV, "")  # empty: not a commit, ask git
    assert push.git_commit() == _git("rev-parse", "HEAD", cwd=checkout)


def test_git_commit_is_unknown_without_a_git_program(checkout, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))  # no git program at all: OSError, not a crash
    assert push.git_commit() == "unknown"


@pytest.mark.parametrize("returncode, stdout", [(0, "abc123\n"), (0, ""), (128, "f" * 40 + "\n")])
def test_git_commit_is_unknown_unless_git_succeeds_with_a_full_id(checkout, monkeypatch, returncode, stdout):
    calls = []

    def fake_run(args, **kwargs):
        calls.append(args)
        return subprocess.CompletedProcess(args, returncode, stdout=stdout, stderr="")

    monkeypatch.setattr(push.subprocess, "run", fake_run)
    assert push.git_commit() == "unknown"
    assert calls == [["git", "-C", str(checkout), "rev-parse", "HEAD"]]


def test_git_commit_waits_a_few_seconds_at_most_then_is_unknown(checkout, monkeypatch):
    limits = []

    def hang(args, **kwargs):
        limits.append(kwargs.get("timeout"))
        raise subprocess.TimeoutExpired(args, kwargs.get("timeout"))

    monkeypatch.setattr(push.subprocess, "run", hang)
    assert push.git_commit() == "unknown"
    assert len(limits) == 1 and limits[0] is not None and 0 < limits[0] <= 10  # a stuck git never stalls a push


def test_categorical_features_are_named_in_the_lineage(diabetes, ridge_models, evaluated):
    training, schema, evaluation = records(diabetes, ridge_models[0], evaluated)
    schema["features"][1] = {**schema["features"][1], "categories": ["f", "m"]}
    lineage = push.build_metadata("m", 1, b"x", training, schema, evaluation, "run-7", NOW)["lineage"]
    assert lineage["params"]["categorical_features"] == [schema["features"][1]["name"]]


def push_reordered(tmp_path, diabetes, ridge_models, evaluation: dict, store: MemStore) -> push.PushResult:
    """v2 (ridge_models[1]) with the features in reverse order, pushed with ``evaluation`` after v1."""
    schema = json.loads(diabetes.schema.read_text())
    schema["features"] = schema["features"][::-1]
    reordered = tmp_path / "schema.json"
    reordered.write_text(json.dumps(schema))
    path = tmp_path / "evaluation-2.json"
    path.write_text(json.dumps(evaluation))
    return push.run(model_dir=ridge_models[1], schema_path=reordered, evaluation_path=path, model_name="m",
                    bucket=BUCKET, store=store, run_id="run-8", now=NOW, guard=Guard())


@pytest.mark.parametrize("allowed", [False, True])
def test_push_decides_again_on_a_changed_schema_as_evaluate_said(tmp_path, diabetes, ridge_models, evaluated, allowed):
    store = MemStore()
    push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    evaluation = {**json.loads(evaluated.read_text()), "allow_schema_change": allowed}
    pushed = push_reordered(tmp_path, diabetes, ridge_models, evaluation, store)
    assert pushed.version == 2 and pushed.promoted is allowed
    assert ("allowed by allow_schema_change" if allowed else "input schema differs from production v1") in pushed.reason
    assert Registry(store, BUCKET, "m").current().version == (2 if allowed else 1)


def test_refreshing_production_is_tried_twice_then_reported(tmp_path, diabetes, ridge_models, evaluated, caplog):
    store = MemStore()
    store.fail("copy", "m/production/metadata.json")
    pushed = push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    assert pushed.promoted
    assert ("refreshing s3://models/m/production/ failed (injected: connection lost before copy "
            "m/production/metadata.json): trying once more") in caplog.text
    assert Registry(store, BUCKET, "m").production_state()[0]
    store.fail("copy", "m/production/metadata.json", times=2)
    with pytest.raises(PushError, match=r"^production.json names v2, but s3://models/m/production/ could not be "
                                        r"refreshed from it \(.*\); readers of production.json"):
        push_with(tmp_path, diabetes, ridge_models[1], json.loads(evaluated.read_text()), store)
    assert Registry(store, BUCKET, "m").current().version == 2  # the pointer moved; production/ lags



def test_refreshing_production_reports_an_unmoved_pointer_as_unchanged(tmp_path, diabetes, ridge_models, evaluated):
    store = MemStore()
    push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    del store.objects[BUCKET]["m/production/metadata.json"]  # production/ lags its pointer
    store.fail("copy", "m/production/metadata.json", times=2)
    # The same model again: nothing new, so the pointer stays and only production/ is repaired (and fails).
    with pytest.raises(PushError, match=r"^production.json is unchanged, but s3://models/m/production/ could not be "
                                        r"refreshed from it \(injected: connection lost before copy "):
        push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    assert Registry(store, BUCKET, "m").current().version == 1


def test_a_normal_push_copies_into_production_without_calling_it_a_repair(tmp_path, diabetes, ridge_models,
                                                                         evaluated, caplog):
    caplog.set_level("INFO", logger="components.registry")
    push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), MemStore())
    assert "copying v1 into s3://models/m/production/" in caplog.text
    assert "repairing" not in caplog.text


def test_an_unreadable_production_score_refuses_the_push_naming_it(tmp_path, diabetes, ridge_models, evaluated):
    store = MemStore()
    push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    v1 = json.loads(store.objects[BUCKET]["m/v1/metadata.json"])
    v1["primary_metric"]["value"] = "n/a"  # sha256 unchanged: still a complete version
    store.objects[BUCKET]["m/v1/metadata.json"] = json.dumps(v1).encode()
    with pytest.raises(PushError, match=r"^s3://models/m/production/metadata.json has no numeric "
                                        r"primary_metric.value: cannot compare; production was not moved$"):
        push_with(tmp_path, diabetes, ridge_models[1], json.loads(evaluated.read_text()), store)
    assert not [key for key in store.keys(BUCKET) if key.startswith("m/v2/")]


def test_metadata_defaults_for_optional_inputs(diabetes, ridge_models, evaluated):
    training, schema, evaluation = records(diabetes, ridge_models[0], evaluated)
    evaluation.pop("allow_schema_change", None)
    training.pop("profile", None)
    del schema["features"]
    metadata = push.build_metadata("m", 1, b"x", training, schema, evaluation, "run-7", NOW)
    params = metadata["lineage"]["params"]
    assert (params["allow_schema_change"], params["categorical_features"], params["bucket"]) == (False, [], "")
    assert "profile" not in metadata


def test_the_training_profile_is_carried_into_the_metadata(diabetes, ridge_models, evaluated):
    training, schema, evaluation = records(diabetes, ridge_models[0], evaluated)
    training["profile"] = {"rows": 3, "features": {"age": {"mean": 0.5}}}
    metadata = push.build_metadata("m", 1, b"x", training, schema, evaluation, "run-7", NOW)
    assert metadata["profile"] == training["profile"]


def test_every_missing_key_is_named_at_once(diabetes, ridge_models, evaluated):
    training, schema, evaluation = records(diabetes, ridge_models[0], evaluated)
    del training["estimator"], evaluation["threshold"]
    with pytest.raises(PushError, match=r"records lack estimator, threshold$"):
        push.build_metadata("m", 1, b"x", training, schema, evaluation, "run-7", NOW)


@pytest.fixture
def new_york_clock(monkeypatch):
    """The machine's local zone set to one that is not UTC (restored after the test)."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_created_at_is_utc_whatever_the_machine_s_zone(diabetes, ridge_models, evaluated, new_york_clock):
    training, schema, evaluation = records(diabetes, ridge_models[0], evaluated)
    assert time.strftime("%z", time.localtime(NOW.timestamp())) == "-0500"  # the zone did change
    plus_two = dt.datetime(2026, 12, 2, 10, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    metadata = push.build_metadata("m", 1, b"x", training, schema, evaluation, "run-7", plus_two)
    assert metadata["created_at"] == "2026-12-02T08:00:05Z"


def test_a_push_stores_every_field_it_was_given(tmp_path, diabetes, ridge_models, evaluated):
    store = MemStore()
    push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    stored = json.loads(store.objects[BUCKET]["m/v1/metadata.json"])
    assert (stored["model_name"], stored["lineage"]["params"]["bucket"], stored["run_id"]) == ("m", BUCKET, "run-7")
    assert stored["skops_file"] == "model.skops"
    assert stored["skops_sha256"] == hashlib.sha256(store.objects[BUCKET]["m/v1/model.skops"]).hexdigest()
    assert json.loads(store.objects[BUCKET]["m/v1/claim.json"])["run_id"] == "run-7"  # who took v1


def test_the_same_data_and_parameters_push_nothing_and_say_so(tmp_path, diabetes, ridge_models, evaluated, caplog):
    store = MemStore()
    push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    again = push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    assert (again.version, again.promoted, again.nothing_new) == (1, False, True)
    assert again.promoted is False
    assert f"{again.reason}: nothing pushed" in caplog.text and again.reason.startswith("nothing new to learn")
    assert not [key for key in store.keys(BUCKET) if key.startswith("m/v2/")]


def _unreadable_production_score(store: MemStore) -> None:
    v1 = json.loads(store.objects[BUCKET]["m/v1/metadata.json"])
    v1["primary_metric"]["value"] = "n/a"  # sha256 unchanged: still a complete version
    store.objects[BUCKET]["m/v1/metadata.json"] = json.dumps(v1).encode()


def test_an_unreadable_production_score_after_writing_keeps_the_version_and_names_it(tmp_path, diabetes,
                                                                                    ridge_models, evaluated):
    store = MemStore()
    push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)

    def meanwhile(op, key):  # production's record breaks while this push writes v2
        if key == "m/v2/metadata.json":
            _unreadable_production_score(store)

    store.before_write = meanwhile
    with pytest.raises(PushError, match=r"^s3://models/m/production/metadata.json has no numeric "
                                        r"primary_metric.value: cannot compare; production was not moved$"):
        push_with(tmp_path, diabetes, ridge_models[1], json.loads(evaluated.read_text()), store)
    assert Registry(store, BUCKET, "m").current().version == 1
    assert Registry(store, BUCKET, "m").inspect(2).complete  # written, kept, not promoted


@pytest.mark.parametrize("allowed", [False, True])
def test_a_changed_schema_is_judged_before_production_s_score(tmp_path, diabetes, ridge_models, evaluated, allowed):
    """Refused for its schema, a push never reads production's score; allowed, the score is read first thing."""
    store = MemStore()
    push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    _unreadable_production_score(store)
    schema = json.loads(diabetes.schema.read_text())
    schema["features"] = schema["features"][::-1]
    reordered = tmp_path / "schema.json"
    reordered.write_text(json.dumps(schema))
    path = tmp_path / "evaluation-2.json"
    path.write_text(json.dumps({**json.loads(evaluated.read_text()), "allow_schema_change": allowed}))

    def again():
        return push.run(model_dir=ridge_models[1], schema_path=reordered, evaluation_path=path, model_name="m",
                        bucket=BUCKET, store=store, run_id="run-8", now=NOW, guard=Guard())

    if allowed:
        with pytest.raises(PushError, match="has no numeric primary_metric.value"):
            again()
        assert not [key for key in store.keys(BUCKET) if key.startswith("m/v2/")]  # refused before any write
    else:
        pushed = again()
        assert (pushed.version, pushed.promoted) == (2, False)
        assert "input schema differs from production v1" in pushed.reason


def test_an_evaluation_without_allow_schema_change_refuses_a_changed_schema(tmp_path, diabetes, ridge_models,
                                                                            evaluated):
    store = MemStore()
    push_with(tmp_path, diabetes, ridge_models[0], json.loads(evaluated.read_text()), store)
    evaluation = json.loads(evaluated.read_text())
    evaluation.pop("allow_schema_change", None)
    pushed = push_reordered(tmp_path, diabetes, ridge_models, evaluation, store)
    assert (pushed.version, pushed.promoted) == (2, False)


@pytest.mark.parametrize("which, says", [("training", "training record"), ("schema", "schema"),
                                         ("evaluation", "evaluation")])
def test_a_missing_input_file_is_named(tmp_path, diabetes, ridge_models, evaluated, which, says):
    model_dir = tmp_path / "model"
    shutil.copytree(ridge_models[0], model_dir)
    paths = {"schema": diabetes.schema, "evaluation": evaluated}
    if which == "training":
        (model_dir / "training.json").unlink()
    else:
        paths[which] = tmp_path / "gone.json"
    with pytest.raises(PipelineError, match=f"^{says} not found at "):
        push.run(model_dir=model_dir, schema_path=paths["schema"], evaluation_path=paths["evaluation"],
                 model_name="m", bucket=BUCKET, store=MemStore(), run_id="run-8", now=NOW, guard=Guard())
