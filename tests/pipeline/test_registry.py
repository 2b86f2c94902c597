"""The registry without a server: MemStore with S3's conditional writes (or rclone's lack of them).

Pinned here: the probe and the refusal, version claims under concurrency, the pointer's
compare-and-swap, a failure at every write and copy of a push (before it lands and after),
tombstoned partial versions, promote / rollback and their refusals, the retry bounds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading

import pytest
from minio.error import InvalidResponseError

from components import push, registry as reg
from components.errors import ObjectStoreError, ObjectStoreUnreachable, PipelineError, PushError, RegistryError
from components.registry import Guard, LockGuard, Registry

from .memstore import MemStore, seed_pointer, seed_version

NOW = dt.datetime(2026, 12, 2, 8, 0, tzinfo=dt.timezone.utc)
BUCKET = "models"


@pytest.fixture(params=["conditional", "lock"])
def mode(request, tmp_path):
    """(store, guard factory): a store that honours conditions, or one that ignores them plus the lock."""
    if request.param == "conditional":
        return MemStore(), Guard
    lock = str(tmp_path / "registry.lock")
    return MemStore(honours_conditions=False), lambda: LockGuard(lock, timeout_s=30)


def do_push(store, guard, diabetes, model_dir, evaluation, run_id="run"):
    return push.run(model_dir=model_dir, schema_path=diabetes.schema, evaluation_path=evaluation, model_name="m",
                    bucket=BUCKET, store=store, run_id=run_id, now=NOW, guard=guard)


def model_bytes(folder) -> bytes:
    return (folder / "model.joblib").read_bytes()


def assert_sound(store, version: int | None) -> Registry:
    """Readers see production.json naming a complete version; history has no gap and ends there."""
    registry = Registry(store, BUCKET, "m")
    pointer = registry.current()
    if version is None:
        assert pointer is None
        return registry
    assert pointer.version == version
    assert registry.complete_version(version).metadata["sha256"] == pointer.sha256
    return registry


def assert_repaired(store) -> None:
    registry = Registry(store, BUCKET, "m")
    pointer = registry.current()
    consistent, state = registry.production_state()
    assert consistent, state
    history = registry.history()
    assert [e["seq"] for e in history] == list(range(1, pointer.seq + 1))
    assert history[-1]["version"] == pointer.version
    for info in registry.versions():
        # Anything not complete is a tombstone: claim.json marked abandoned, nothing else.
        assert info.complete or list(info.keys) == [f"m/v{info.number}/claim.json"], info


# ------------------------------------------------------------------------------------------- probe

def test_the_probe_tells_a_store_that_honours_conditions_from_one_that_ignores_them():
    honest, ignoring = MemStore(), MemStore(honours_conditions=False)
    for store in (honest, ignoring):
        store.ensure_bucket(BUCKET)
    assert reg.conditional_writes(honest, BUCKET) is True
    assert reg.conditional_writes(ignoring, BUCKET) is False
    assert honest.keys(BUCKET) == [] and ignoring.keys(BUCKET) == []  # the probe cleans up


def test_a_store_ignoring_conditions_without_a_lock_is_refused(diabetes, ridge_models, evaluated, monkeypatch):
    store = MemStore(honours_conditions=False)
    monkeypatch.delenv(reg.LOCK_FILE_ENV, raising=False)
    with pytest.raises(RegistryError, match=r"ignores conditional writes .* set REGISTRY_LOCK_FILE"):
        do_push(store, None, diabetes, ridge_models[0], evaluated)
    assert store.keys(BUCKET) == []  # nothing written


def test_a_store_ignoring_conditions_uses_the_lock_file(tmp_path):
    store = MemStore(honours_conditions=False)
    store.ensure_bucket(BUCKET)
    guard = reg.guard_for(store, BUCKET, env={reg.LOCK_FILE_ENV: str(tmp_path / "lock")})
    assert isinstance(guard, LockGuard) and guard.path == str(tmp_path / "lock")
    assert isinstance(reg.guard_for(MemStore(objects={BUCKET: {}}), BUCKET, env={}), Guard)


def test_the_lock_excludes_another_holder_and_times_out(tmp_path):
    first, second = LockGuard(str(tmp_path / "lock")), LockGuard(str(tmp_path / "lock"), timeout_s=0.2)
    with first.session(), first.session():  # re-entrant for its owner
        with pytest.raises(RegistryError, match="held the registry lock .* for more than 0 s"):
            with second.session():
                pass
    with second.session():  # released
        pass


# ------------------------------------------------------------------------------------ versions

def test_a_push_claims_then_writes_and_moves_the_pointer(mode, diabetes, ridge_models, evaluated):
    store, guard = mode
    first = do_push(store, guard(), diabetes, ridge_models[0], evaluated)
    assert (first.version, first.promoted) == (1, True)
    writes = [(op, key) for op, key in store.calls if op in ("put", "copy")
              and not key.startswith(reg.PROBE_PREFIX)]
    assert writes == [("put", "m/v1/claim.json"), ("put", "m/v1/model.joblib"), ("put", "m/v1/model.skops"),
                      ("put", "m/v1/metadata.json"), ("put", "m/production.json"), ("put", "m/history/00000001.json"),
                      ("copy", "m/production/model.joblib"), ("copy", "m/production/model.skops"),
                      ("copy", "m/production/metadata.json")]
    assert_sound(store, 1)
    assert_repaired(store)


def test_the_same_data_and_parameters_push_nothing(mode, diabetes, ridge_models, evaluated):
    store, guard = mode
    do_push(store, guard(), diabetes, ridge_models[0], evaluated)
    before = dict(store.objects[BUCKET])
    again = do_push(store, guard(), diabetes, ridge_models[0], evaluated)
    assert again.nothing_new and not again.promoted and again.version == 1
    assert "nothing new to learn" in again.reason
    assert store.objects[BUCKET] == before


def test_a_version_taken_by_a_concurrent_run_is_left_alone_and_the_next_is_used(diabetes, ridge_models, evaluated):
    store = MemStore()
    other = {"done": False}

    def concurrent(op, key):  # another run claims v1 just before this run does
        if key == "m/v1/claim.json" and not other["done"]:
            other["done"] = True
            seed_version(store, BUCKET, "m", 1, {"task": "regression"}, b"the other run's model")
    store.before_write = concurrent
    result = do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    assert result.version == 2 and result.promoted
    assert store.get_bytes(BUCKET, "m/v1/model.joblib") == b"the other run's model"  # never overwritten
    assert json.loads(store.get_bytes(BUCKET, "m/v2/metadata.json"))["version"] == 2
    assert_sound(store, 2)


def test_version_retries_are_bounded(diabetes, ridge_models, evaluated):
    store = MemStore()

    def always_taken(op, key):
        if key.endswith("/claim.json") and not key.startswith(reg.PROBE_PREFIX):
            number = int(key.split("/")[1][1:])
            if not store.exists(BUCKET, key):
                store.objects[BUCKET][key] = b'{"run_id": "other"}'
                store.objects[BUCKET][f"m/v{number}/model.joblib"] = b"x"
    store.before_write = always_taken
    with pytest.raises(PushError, match=rf"gave up after {reg.MAX_VERSION_ATTEMPTS} attempts \(the last v5\)"):
        do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    assert_sound(store, None)


@pytest.mark.parametrize("runs", [3])
def test_concurrent_pushes_under_the_lock_lose_and_mix_nothing(diabetes, ridge_models, evaluated, tmp_path, runs):
    store = MemStore(honours_conditions=False)  # rclone: only the lock keeps them apart
    lock = str(tmp_path / "lock")
    results, errors = {}, []

    def one(index: int) -> None:
        try:
            results[index] = do_push(store, LockGuard(lock, 30), diabetes, ridge_models[index], evaluated, f"run-{index}")
        except Exception as exc:  # reported below
            errors.append(exc)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(r.version for r in results.values()) == [1, 2, 3]
    for index, result in results.items():  # each run's report matches the store
        metadata = json.loads(store.get_bytes(BUCKET, f"m/v{result.version}/metadata.json"))
        assert metadata["run_id"] == f"run-{index}"
        assert store.get_bytes(BUCKET, f"m/v{result.version}/model.joblib") == model_bytes(ridge_models[index])
        assert metadata["sha256"] == result.sha256
    assert_repaired(store)


def test_a_promotion_that_loses_the_compare_and_swap_decides_again(diabetes, ridge_models, evaluated, tmp_path):
    store = MemStore()
    do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    better = json.loads(evaluated.read_text())
    better["primary_metric"]["value"] += 0.5  # so the raced-in version wins the re-decision
    seed_version(store, BUCKET, "m", 5, {"task": "regression", "primary_metric": better["primary_metric"],
                                         "schema": json.loads(diabetes.schema.read_text())}, b"better model")
    raced = {"done": False}

    def concurrent(op, key):  # another promotion lands between this push's read and its swap
        if key == "m/production.json" and not raced["done"]:
            raced["done"] = True
            Registry(store, BUCKET, "m", Guard()).move(5, action="promote", by="someone", reason="better",
                                                      expected=Registry(store, BUCKET, "m").current())
    store.before_write = concurrent
    result = do_push(store, Guard(), diabetes, ridge_models[1], evaluated)
    assert not result.promoted and "worse than production v5" in result.reason
    assert_sound(store, 5)
    assert [e["version"] for e in Registry(store, BUCKET, "m").history()] == [1, 5]


def _seed_worse_version(store, diabetes, evaluated, number: int, **extra) -> None:
    """v<number>: same task and schema as the candidates, a primary metric far below theirs."""
    worse = json.loads(evaluated.read_text())["primary_metric"]
    worse["value"] -= 0.5
    seed_version(store, BUCKET, "m", number, {"task": "regression", "primary_metric": worse,
                                              "schema": json.loads(diabetes.schema.read_text()), **extra},
                 f"model {number}".encode())


def test_a_raced_in_production_with_the_same_training_is_kept_and_the_candidate_is_not_promoted(
        diabetes, ridge_models, evaluated, caplog):
    store = MemStore()
    do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    training = json.loads((ridge_models[1] / "training.json").read_text())
    same = push.lineage("m", BUCKET, training, json.loads(diabetes.schema.read_text()),
                        json.loads(evaluated.read_text()), "other-run")["fingerprint"]
    # Worse by its score, so only "nothing new to learn" keeps it once it is production.
    _seed_worse_version(store, diabetes, evaluated, 5, lineage={"fingerprint": same})
    raced = {"done": False}

    def concurrent(op, key):  # another run of the same training is promoted between this push's read and swap
        if key == "m/production.json" and not raced["done"]:
            raced["done"] = True
            Registry(store, BUCKET, "m", Guard()).move(5, action="promote", by="someone", reason="same",
                                                      expected=Registry(store, BUCKET, "m").current())
    store.before_write = concurrent
    with caplog.at_level("WARNING", logger="components.push"):
        result = do_push(store, Guard(), diabetes, ridge_models[1], evaluated)
    assert (result.version, result.promoted) == (6, False)
    assert result.reason.startswith("nothing new to learn: production v5 was trained on the same data")
    assert_sound(store, 5)
    assert Registry(store, BUCKET, "m").complete_version(6).metadata["sha256"] == result.sha256  # kept, whole
    assert "s3://models/m/production.json changed since it was read (another promotion won): not moved to v6; " \
           "deciding again" in caplog.text
    assert f"production NOT moved: {result.reason} (production changed since evaluate); s3://models/m/v6/ is kept" \
           in caplog.text


def test_a_production_that_keeps_moving_stops_the_push_after_the_last_attempt(diabetes, ridge_models, evaluated):
    store = MemStore()
    do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    _seed_worse_version(store, diabetes, evaluated, 5)
    moves, moving = [], []

    def concurrent(op, key):  # before each of this push's swaps, someone else moves production: v5, v1, v5, ...
        if key != "m/production.json" or moving:
            return
        moving.append(True)  # the move below writes production.json too
        target = 1 if moves and moves[-1] == 5 else 5
        Registry(store, BUCKET, "m", Guard()).move(target, action="promote", by="someone", reason="race",
                                                  expected=Registry(store, BUCKET, "m").current())
        moves.append(target)
        moving.clear()
    store.before_write = concurrent
    with pytest.raises(PushError, match=rf"^production kept moving: v6 was written \(complete, kept\) but not promoted "
                                        rf"after {reg.MAX_MOVE_ATTEMPTS} compare-and-swap attempts$"):
        do_push(store, Guard(), diabetes, ridge_models[1], evaluated)
    assert len(moves) == reg.MAX_MOVE_ATTEMPTS  # one lost swap per attempt, then it gave up
    assert Registry(store, BUCKET, "m").current().version == moves[-1]
    assert Registry(store, BUCKET, "m").complete_version(6).metadata["version"] == 6  # written whole, kept


# ---------------------------------------------------------------------- failures at every write

def _write_points(diabetes, ridge_models, evaluated, guard_factory, honours) -> list[tuple[str, str]]:
    """Every write and copy a second push makes, recorded on a clean store."""
    store = MemStore(honours_conditions=honours)
    do_push(store, guard_factory(), diabetes, ridge_models[0], evaluated)
    store.calls.clear()
    do_push(store, guard_factory(), diabetes, ridge_models[1], evaluated)
    points = [(op, key) for op, key in store.calls if op in ("put", "copy") and not key.startswith(reg.PROBE_PREFIX)]
    return list(dict.fromkeys(points))


@pytest.mark.parametrize("landed", [False, True], ids=["before", "landed"])
def test_a_failure_at_every_write_and_copy_leaves_readers_on_a_complete_version(mode, diabetes, ridge_models, evaluated,
                                                                               landed):
    store_kind, guard = mode
    honours = store_kind.honours_conditions
    points = _write_points(diabetes, ridge_models, evaluated, guard, honours)
    assert len(points) >= 7  # claim, model, metadata, pointer, history (and its repair check), two copies
    for op, key in points:
        store = MemStore(honours_conditions=honours)
        do_push(store, guard(), diabetes, ridge_models[0], evaluated)
        store.fail(op, key, landed)
        try:
            result = do_push(store, guard(), diabetes, ridge_models[1], evaluated)
            assert result.promoted, (op, key)  # a lost history entry or a copy retried once: went through
        except PipelineError as exc:
            assert "injected" in str(exc), (op, key)
        moved = Registry(store, BUCKET, "m").current().version
        assert moved in (1, 2), (op, key)
        assert_sound(store, moved)
        following = do_push(store, guard(), diabetes, ridge_models[2], evaluated)
        assert following.promoted, (op, key)
        assert_sound(store, following.version)
        assert_repaired(store)
        assert store.get_bytes(BUCKET, "m/production/model.joblib") == model_bytes(ridge_models[2])


def test_a_partial_version_still_being_written_by_a_live_claim_is_left_alone(diabetes, ridge_models, evaluated):
    store = MemStore()
    store.ensure_bucket(BUCKET)
    fresh = json.dumps({"run_id": "alive", "claimed_at": reg._now()}).encode()
    store.put_bytes(BUCKET, "m/v1/claim.json", fresh)
    store.put_bytes(BUCKET, "m/v2/model.joblib", b"no claim, no metadata: dead")
    result = do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    assert result.version == 3
    assert store.get_bytes(BUCKET, "m/v1/claim.json") == fresh  # a push may still be uploading it
    assert json.loads(store.get_bytes(BUCKET, "m/v2/claim.json"))["abandoned"] is True
    assert store.list_keys(BUCKET, "m/v2/") == ["m/v2/claim.json"]


# ------------------------------------------------------------------------ promote and rollback

def _three_versions(store, diabetes, ridge_models, evaluated):
    for model in ridge_models:
        do_push(store, Guard(), diabetes, model, evaluated)
    return Registry.for_writing(store, BUCKET, "m", Guard())


def test_promote_and_rollback_walk_the_history(diabetes, ridge_models, evaluated):
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    assert registry.current().version == 3
    registry.promote(1, "tester", "back to the first")
    assert_sound(store, 1)
    assert store.get_bytes(BUCKET, "m/production/model.joblib") == model_bytes(ridge_models[0])
    assert registry.rollback("tester", "undo").version == 3  # back to what production was before the promote
    assert registry.rollback("tester", "undo").version == 2
    assert registry.rollback("tester", "undo").version == 1
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback("tester", "undo")
    history = registry.history()
    assert [(e["action"], e["version"]) for e in history] == [
        ("push", 1), ("push", 2), ("push", 3), ("promote", 1), ("rollback", 3), ("rollback", 2), ("rollback", 1)]
    assert all(e["by"] and e["moved_at"] and e["reason"] for e in history)
    assert_repaired(store)


def test_promote_refuses_missing_partial_other_task_and_other_schema(diabetes, ridge_models, evaluated):
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    with pytest.raises(RegistryError, match=r"v9 does not exist .*complete versions: v1, v2, v3"):
        registry.promote(9, "t", "r")
    store.put_bytes(BUCKET, "m/v4/claim.json", b"{}")
    store.put_bytes(BUCKET, "m/v4/model.joblib", b"truncated")
    with pytest.raises(RegistryError, match=r"m/v4/ is partial \(no metadata.json\): it is never served"):
        registry.promote(4, "t", "r")
    schema = json.loads(diabetes.schema.read_text())
    seed_version(store, BUCKET, "m", 5, {"task": "classification", "schema": schema})
    with pytest.raises(RegistryError, match="v5 is a classification model; production v3 is regression"):
        registry.promote(5, "t", "r")
    narrow = {**schema, "features": schema["features"][:3]}
    seed_version(store, BUCKET, "m", 6, {"task": "regression", "schema": narrow})
    with pytest.raises(RegistryError, match=r"v6 takes another input schema than production v3 \(3 features "
                                            r"instead of 10; without bp, s1, s2, s3, s4...\)"):
        registry.promote(6, "t", "r")
    seed_version(store, BUCKET, "m", 7, {"task": "regression", "schema": schema}, b"other bytes")
    store.put_bytes(BUCKET, "m/v7/model.joblib", b"tampered")
    with pytest.raises(RegistryError, match="sha256 differs"):
        registry.promote(7, "t", "r")
    assert_sound(store, 3)  # nothing moved
    assert registry.promote(6, "t", "r", allow_schema_change=True).version == 6


def test_a_legacy_production_folder_is_adopted(diabetes, ridge_models, evaluated):
    store = MemStore()
    schema = json.loads(diabetes.schema.read_text())
    seed_version(store, BUCKET, "m", 1, {"task": "regression", "schema": schema})
    store.copy(BUCKET, "m/v1/model.joblib", "m/production/model.joblib")
    store.copy(BUCKET, "m/v1/metadata.json", "m/production/metadata.json")
    registry = Registry(store, BUCKET, "m")
    assert registry.current().version == 1 and registry.current().etag is None
    assert registry.production_state()[0]


def test_an_invalid_pointer_is_an_error_naming_it():
    store = MemStore()
    store.ensure_bucket(BUCKET)
    store.put_bytes(BUCKET, "m/production.json", b'{"version": 0, "sha256": "x", "seq": 1}')
    with pytest.raises(RegistryError, match=r"s3://models/m/production.json is invalid: version=0 .*sha256='x'"):
        Registry(store, BUCKET, "m").current()


def test_a_pointer_to_a_version_whose_metadata_names_another_model_is_refused():
    store = MemStore()
    seed_version(store, BUCKET, "m", 2, {"task": "regression"})
    seed_pointer(store, BUCKET, "m", 2, model=b"not the same model")
    with pytest.raises(RegistryError, match="names v2 with sha256 .*but its metadata.json says"):
        Registry(store, BUCKET, "m").production_metadata()


def test_listing_counts_only_complete_versions(diabetes, ridge_models, evaluated):
    store = MemStore()
    _three_versions(store, diabetes, ridge_models, evaluated)
    store.put_bytes(BUCKET, "m/v4/model.joblib", b"no metadata")
    assert reg.versions(store, BUCKET, "m") == [1, 2, 3]
    assert hashlib.sha256(store.get_bytes(BUCKET, "m/production/model.joblib")).hexdigest() == \
        Registry(store, BUCKET, "m").current().sha256


def test_an_unreachable_store_during_promote_moves_nothing(diabetes, ridge_models, evaluated):
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    store.fail("put", "m/production.json", landed=False)
    with pytest.raises(ObjectStoreUnreachable, match="injected"):
        registry.promote(1, "t", "r")
    assert_sound(store, 3)


class _InternalErrorOnce(MemStore):
    """A store whose first write answers S3's 500 InternalError, as rclone does when parallel PUTs race."""

    def __init__(self, landed: bool) -> None:
        super().__init__()
        self.landed, self.failed_keys = landed, []

    def put_bytes(self, bucket, key, data, content_type="application/octet-stream", if_absent=False, if_match=None):
        if not self.failed_keys:
            self.failed_keys.append(key)
            if self.landed:  # the write took effect, its answer did not come back
                super().put_bytes(bucket, key, data, content_type)
            error = InvalidResponseError(500, "text/xml; charset=utf-8", "<Error><Code>InternalError</Code></Error>")
            raise ObjectStoreError(f"cannot write s3://{bucket}/{key}: InternalError") from error
        return super().put_bytes(bucket, key, data, content_type, if_absent, if_match)


@pytest.mark.parametrize("landed", [False, True])
def test_the_probe_tries_again_at_a_new_key_after_an_internal_error(landed):
    store = _InternalErrorOnce(landed)
    store.ensure_bucket(BUCKET)
    assert reg.conditional_writes(store, BUCKET) is True  # not misread as "If-None-Match ignored"
    (failed,) = store.failed_keys
    probes = {key for op, key in store.calls if op == "put"} - {failed}
    assert len(probes) == 1 and next(iter(probes)).startswith(reg.PROBE_PREFIX)  # the try is at another key
    assert store.keys(BUCKET) == []  # what the failed try left is removed too


def test_any_other_store_error_in_the_probe_is_raised():
    store = MemStore()
    store.ensure_bucket(BUCKET)
    store.fail("put", "", landed=False)
    with pytest.raises(ObjectStoreError, match="injected: connection lost before put"):
        reg.conditional_writes(store, BUCKET)
    assert [op for op, _ in store.calls].count("put") == 1  # no second try


# ------------------------------------------------------------ edges that mutation testing found unpinned

def test_every_object_a_push_writes_carries_its_content_type(mode, diabetes, ridge_models, evaluated):
    store, guard = mode
    do_push(store, guard(), diabetes, ridge_models[0], evaluated)
    store.fail("put", "m/v2/metadata.json")  # the second push fails at its last write: a tombstone
    with pytest.raises(PushError):
        do_push(store, guard(), diabetes, ridge_models[1], evaluated)
    types = {key: store.content_types[BUCKET, key] for key in store.keys(BUCKET)
             if not key.startswith(reg.PROBE_PREFIX)}
    assert len(types) >= 9
    for key, content_type in types.items():
        assert content_type == ("application/json" if key.endswith(".json") else "application/octet-stream"), key
    tombstone = json.loads(store.get_bytes(BUCKET, "m/v2/claim.json"))
    assert tombstone["abandoned"] is True and tombstone["reason"] == "the push writing it failed at m/v2/metadata.json"
    assert reg._parse_time(tombstone["at"]) is not None


def test_a_ctrl_c_while_writing_cleans_up_then_stops(diabetes, ridge_models, evaluated):
    store = MemStore()

    def interrupt(op, key):
        if key == "m/v1/model.skops":
            raise KeyboardInterrupt
    store.before_write = interrupt
    with pytest.raises(KeyboardInterrupt):  # not turned into a PushError: the user asked to stop
        do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    assert store.list_keys(BUCKET, "m/v1/") == ["m/v1/claim.json"]
    assert json.loads(store.get_bytes(BUCKET, "m/v1/claim.json"))["abandoned"] is True


def test_a_tombstone_or_delete_that_fails_is_logged_and_reported(diabetes, ridge_models, evaluated, caplog):
    store = MemStore()
    store.fail("put", "m/v1/metadata.json")
    claims = []

    def tombstone_lost(op, key):  # the claim lands; the tombstone over it (the second put) does not
        if key == "m/v1/claim.json":
            claims.append(op)
            if len(claims) == 2:
                raise ObjectStoreUnreachable("tombstone lost")
    store.before_write = tombstone_lost
    with caplog.at_level("ERROR", logger="components.registry"), pytest.raises(
            PushError, match=r"s3://models/m/v1/ could not be marked abandoned \(tombstone lost\)"):
        do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    assert "could not mark s3://models/m/v1/ abandoned: tombstone lost" in caplog.messages
    store = MemStore()
    store.fail("put", "m/v1/metadata.json")
    store.fail("remove", "m/v1/model.joblib")
    with caplog.at_level("ERROR", logger="components.registry"), pytest.raises(PushError, match="could not be deleted"):
        do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    assert "could not delete s3://models/m/v1/: injected: connection lost before remove m/v1/model.joblib" \
        in caplog.messages


def test_a_pointer_records_the_version_it_replaced_and_the_move_is_logged(diabetes, ridge_models, evaluated, caplog):
    store = MemStore()
    with caplog.at_level("INFO", logger="components.registry"):
        do_push(store, Guard(), diabetes, ridge_models[0], evaluated, run_id="r1")
        do_push(store, Guard(), diabetes, ridge_models[1], evaluated, run_id="r2")
    pointer = Registry(store, BUCKET, "m").current()
    assert (pointer.version, pointer.seq, pointer.previous) == (2, 2, 1)
    assert [e["previous"] for e in Registry(store, BUCKET, "m").history()] == [None, 1]
    assert "production.json: v- -> v1 (seq 1, push by run r1)" in caplog.messages
    assert "production.json: v1 -> v2 (seq 2, push by run r2)" in caplog.messages


def test_a_history_entry_that_cannot_be_written_is_logged_and_the_move_stands(diabetes, ridge_models, evaluated,
                                                                             caplog):
    store = MemStore()
    store.fail("put", "m/history/00000001.json")
    with caplog.at_level("ERROR", logger="components.registry"):
        do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    assert Registry(store, BUCKET, "m").current().version == 1
    assert ("production moved to v1 but s3://models/m/history/00000001.json could not be written (injected: "
            "connection lost before put m/history/00000001.json): the next move writes it") in caplog.messages


def test_promoting_production_itself_moves_nothing_but_repairs_production_folder(diabetes, ridge_models, evaluated,
                                                                               caplog):
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    store.put_bytes(BUCKET, "m/production/model.joblib", b"stale")
    with caplog.at_level("INFO", logger="components.registry"):
        pointer = registry.promote(3, "t", "again")
    assert pointer == registry.current() and [e["version"] for e in registry.history()] == [1, 2, 3]
    assert "v3 is already production" in caplog.messages
    assert any(m.endswith(": repairing it (copying v3 into it)") for m in caplog.messages)  # no move: a repair
    assert store.get_bytes(BUCKET, "m/production/model.joblib") == model_bytes(ridge_models[2])
    assert registry.sync_production() is False  # consistent now: nothing copied


def test_a_promotion_that_loses_a_race_reads_again_and_gives_up_if_it_keeps_losing(diabetes, ridge_models,
                                                                                  evaluated, caplog):
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    moving, moved, budget = [], [], [1]

    def concurrent(op, key):  # someone else moves production (to v3, then v1, v3, ...) before a swap
        if key != "m/production.json" or moving or len(moved) >= budget[0]:
            return
        moving.append(True)  # the move below writes production.json too
        other = Registry(store, BUCKET, "m", Guard())
        target = 1 if other.current().version == 3 else 3
        other.move(target, action="promote", by="someone", reason="race", expected=other.current())
        moved.append(target)
        moving.clear()
    store.before_write = concurrent
    with caplog.at_level("INFO", logger="components.registry"):
        assert registry.promote(2, "t", "r").version == 2  # lost once, read again, won
    assert moved == [1]
    assert any(m.endswith("(another promotion won): not moved to v2; reading it again") for m in caplog.messages)
    assert "copying v2 into s3://models/m/production/" in caplog.messages  # after a move: no "repairing"
    assert not any("repairing" in m for m in caplog.messages)
    registry.promote(1, "t", "r")
    moved.clear()
    budget[0] = reg.MAX_MOVE_ATTEMPTS
    with pytest.raises(RegistryError, match=rf"^production kept moving: gave up promoting v2 after "
                                            rf"{reg.MAX_MOVE_ATTEMPTS} tries$"):
        registry.promote(2, "t", "r")
    assert len(moved) == reg.MAX_MOVE_ATTEMPTS


def test_rollback_follows_the_pointer_when_history_lost_entries(diabetes, ridge_models, evaluated):
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    store.remove(BUCKET, "m/history/00000003.json")  # the entry for v3 lost: the pointer still names v3
    assert registry.rollback_target() == 2
    registry.promote(1, "t", "r")
    # A rollback entry from before rollbacks were a stack: its version is followed as recorded.
    store.put_bytes(BUCKET, "m/history/00000005.json", json.dumps(
        {"seq": 5, "version": 2, "action": "rollback", "sha256": "x"}).encode())
    # The stack: pushes 1, 2, 3 (entry 3 rewritten by the promote), promote 1; the rollback entry pops 1 and,
    # its v2 not being on top, pushes 2; the pointer's v1 goes on top: [1, 2, 3, 2, 1], so before v1 came v2.
    assert registry.rollback_target() == 2
    with pytest.raises(RegistryError, match="^m has no production model: nothing to roll back$"):
        Registry(MemStore(objects={BUCKET: {}}), BUCKET, "m").rollback_target()


def test_rollback_to_another_schema_needs_allow_schema_change(diabetes, ridge_models, evaluated):
    store = MemStore()
    schema = json.loads(diabetes.schema.read_text())
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    seed_version(store, BUCKET, "m", 4, {"task": "regression", "schema": {**schema, "features": schema["features"][:3]}})
    registry.promote(4, "t", "r", allow_schema_change=True)
    with pytest.raises(RegistryError, match="takes another input schema than production v4"):
        registry.rollback("t", "undo")
    assert registry.rollback("t", "undo", allow_schema_change=True).version == 3


def test_promote_compares_with_production_even_if_its_files_were_tampered(diabetes, ridge_models, evaluated):
    # The check reads production's metadata without re-hashing its model: a damaged production still has a task.
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    store.put_bytes(BUCKET, "m/v3/model.joblib", b"damaged")
    seed_version(store, BUCKET, "m", 5, {"task": "classification", "schema": json.loads(diabetes.schema.read_text())})
    with pytest.raises(RegistryError, match="v5 is a classification model; production v3 is regression"):
        registry.promote(5, "t", "r")


def test_listings_and_refusals_read_no_model_file(diabetes, ridge_models, evaluated):
    # Hashing every version's model to list them would download every model.
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    store.put_bytes(BUCKET, "m/v2/model.joblib", b"damaged")  # listed all the same: only promoting it hashes it
    store.calls.clear()
    assert reg.versions(store, BUCKET, "m") == [1, 2, 3]
    with pytest.raises(RegistryError, match=r"v9 does not exist .*complete versions: v1, v2, v3"):
        registry.promote(9, "t", "r")
    assert not [key for op, key in store.calls if op == "get" and key.endswith("model.joblib")]


def test_production_metadata_without_a_store_or_production_is_none(diabetes, ridge_models, evaluated):
    assert reg.production_metadata(None, BUCKET, "m") is None
    store = MemStore(objects={BUCKET: {}})
    assert reg.production_metadata(store, BUCKET, "m") is None
    do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    assert reg.production_metadata(store, BUCKET, "m")["version"] == 1


def test_a_lock_guard_takes_its_timeout_from_the_environment(tmp_path, caplog):
    store = MemStore(honours_conditions=False, objects={BUCKET: {}})
    lock = str(tmp_path / "lock")
    with caplog.at_level("INFO", logger="components.registry"):
        guard = reg.guard_for(store, BUCKET, env={reg.LOCK_FILE_ENV: lock, reg.LOCK_TIMEOUT_ENV: "7.5"})
    assert guard.timeout_s == 7.5
    assert reg.guard_for(store, BUCKET, env={reg.LOCK_FILE_ENV: lock}).timeout_s == reg.LOCK_TIMEOUT_S
    assert f"s3://{BUCKET}/ ignores conditional writes: writers serialise on the lock {lock}" in caplog.messages


def test_the_probe_runs_once_per_endpoint_and_bucket(monkeypatch):
    monkeypatch.setattr(reg, "_PROBED", {})
    probes = []

    class Endpoint(MemStore):
        settings = type("Settings", (), {"url": "http://store:9000"})()
    monkeypatch.setattr(reg, "conditional_writes", lambda store, bucket: probes.append(bucket) or False)
    store = Endpoint(objects={BUCKET: {}, "other": {}})
    env = {reg.LOCK_FILE_ENV: "/tmp/lock"}
    for _ in range(2):
        assert isinstance(reg.guard_for(store, BUCKET, env=env), LockGuard)  # False is remembered too
    reg.guard_for(store, "other", env=env)
    assert probes == [BUCKET, "other"]
    plain = MemStore(objects={BUCKET: {}})  # no settings (tests): probed every time
    reg.guard_for(plain, BUCKET, env=env)
    reg.guard_for(plain, BUCKET, env=env)
    assert probes == [BUCKET, "other", BUCKET, BUCKET]


def test_a_lock_writer_cleans_any_partial_and_a_conditional_one_only_an_old_claim(diabetes, ridge_models, evaluated,
                                                                                  tmp_path, caplog):
    claim = json.dumps({"run_id": "r9", "claimed_at": reg._now()}).encode()
    store = MemStore(honours_conditions=False)
    seed_version(store, BUCKET, "m", 1, {"task": "regression"})
    store.remove(BUCKET, "m/v1/metadata.json")
    store.put_bytes(BUCKET, "m/v1/claim.json", claim)  # fresh: yet under the lock nobody else is writing
    lock = LockGuard(str(tmp_path / "lock"))
    with lock.session():
        assert Registry(store, BUCKET, "m", lock).clean_partials() == [1]
    store = MemStore()
    seed_version(store, BUCKET, "m", 1, {"task": "regression"})
    store.remove(BUCKET, "m/v1/metadata.json")
    store.put_bytes(BUCKET, "m/v1/claim.json", claim)
    with caplog.at_level("INFO", logger="components.registry"):
        assert Registry(store, BUCKET, "m", Guard(), stale_claim_s=60).clean_partials() == []
    assert any(m.startswith("v1 is partial (no metadata.json) but claimed ") and m.endswith(" s ago by run r9: left to it")
               for m in caplog.messages)
    assert Registry(store, BUCKET, "m", Guard(), stale_claim_s=0).clean_partials() == [1]  # old enough



def test_registry_json_is_indented_with_a_final_newline_and_never_holds_nan(diabetes, ridge_models, evaluated):
    store = MemStore()
    do_push(store, Guard(), diabetes, ridge_models[0], evaluated)
    for key in ("m/production.json", "m/history/00000001.json", "m/v1/claim.json", "m/v1/metadata.json"):
        text = store.get_bytes(BUCKET, key).decode()
        assert text == json.dumps(json.loads(text), indent=2) + "\n", key  # readable in a browser or `cat`
    registry = Registry(store, BUCKET, "m", Guard())
    with pytest.raises(ValueError, match="not JSON compliant"):
        registry.write_version(b"model", lambda n: {"version": n, "metrics": {"r2": float("nan")}}, "run")
    assert not store.exists(BUCKET, "m/v2/metadata.json")


def test_a_claim_says_who_took_the_version_and_when(diabetes, ridge_models, evaluated, caplog):
    import os

    store = MemStore()
    with caplog.at_level("INFO", logger="components.registry"):
        do_push(store, Guard(), diabetes, ridge_models[0], evaluated, run_id="run-42")
    claim = json.loads(store.get_bytes(BUCKET, "m/v1/claim.json"))
    assert (claim["run_id"], claim["pid"], claim["host"]) == ("run-42", os.getpid(), os.uname().nodename)
    claimed = reg._parse_time(claim["claimed_at"])
    assert abs((dt.datetime.now(dt.timezone.utc) - claimed).total_seconds()) < 60
    assert "wrote s3://models/m/v1/{model.joblib,model.skops,metadata.json}" in caplog.messages


def test_registry_times_are_utc_whatever_the_machine_s_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        written = reg._parse_time(reg._now())
        assert abs((dt.datetime.now(dt.timezone.utc) - written).total_seconds()) < 60
    finally:
        monkeypatch.undo()
        time.tzset()
    assert reg._parse_time("2026-12-02T08:00:00Z") == NOW  # without fractions, as older records wrote it
    assert reg._parse_time("2026-12-02T08:00:00.250000Z") == NOW + dt.timedelta(milliseconds=250)
    assert reg._parse_time("yesterday") is None and reg._parse_time(None) is None


def test_the_probe_writes_only_under_its_prefix_and_catches_a_store_ignoring_if_match_alone():
    class IgnoresIfMatch(MemStore):  # honours If-None-Match: * but writes over a stale ETag
        def put_bytes(self, bucket, key, data, content_type="application/octet-stream", if_absent=False,
                      if_match=None):
            return super().put_bytes(bucket, key, data, content_type, if_absent)
    store = IgnoresIfMatch(objects={BUCKET: {}})
    assert reg.conditional_writes(store, BUCKET) is False
    honest = MemStore(objects={BUCKET: {}})
    assert reg.conditional_writes(honest, BUCKET) is True
    # The writer policy lets pipelines write there: the probe may use no other key.
    assert {key.startswith(reg.PROBE_PREFIX) for _, key in store.calls + honest.calls} == {True}
    assert store.keys(BUCKET) == [] and honest.keys(BUCKET) == []


def test_a_taken_version_is_logged_with_the_next_one_tried(diabetes, ridge_models, evaluated, caplog):
    store = MemStore()
    store.ensure_bucket(BUCKET)
    store.put_bytes(BUCKET, "m/v1/claim.json", json.dumps({"run_id": "other", "claimed_at": reg._now()}).encode())

    with caplog.at_level("WARNING", logger="components.registry"):
        registry = Registry(store, BUCKET, "m", Guard(), stale_claim_s=3600)
        with registry.guard.session():
            numbers = registry.numbers
            registry.numbers = lambda: []  # v1 looked free when listed; another run's claim landed since
            assert registry.write_version(b"model", lambda n: {"version": n}, "run") == 2
            registry.numbers = numbers
    assert "v1 was taken by a concurrent run (s3://models/m/v1/); trying v2" in caplog.messages


def test_leftovers_of_abandoned_versions_and_partials_are_cleaned_and_logged(diabetes, ridge_models, evaluated,
                                                                            caplog):
    store = MemStore()
    store.ensure_bucket(BUCKET)
    for number in (1, 2):  # tombstoned, but their files were not all deleted
        store.put_bytes(BUCKET, f"m/v{number}/claim.json", json.dumps({"abandoned": True, "reason": "x"}).encode())
        store.put_bytes(BUCKET, f"m/v{number}/model.joblib", b"left")
    store.put_bytes(BUCKET, "m/v3/claim.json", json.dumps({"run_id": "dead", "claimed_at": "2020-01-01T00:00:00Z"}).encode())
    store.put_bytes(BUCKET, "m/v3/model.joblib", b"half")  # a push that died: claimed long ago, no metadata
    store.put_bytes(BUCKET, "m/v4/model.joblib", b"no claim at all")
    store.calls.clear()
    with caplog.at_level("WARNING", logger="components.registry"):
        cleaned = Registry(store, BUCKET, "m", Guard()).clean_partials()
    assert cleaned == [3, 4]
    for number in (1, 2, 3, 4):
        assert store.list_keys(BUCKET, f"m/v{number}/") == [f"m/v{number}/claim.json"]
        assert json.loads(store.get_bytes(BUCKET, f"m/v{number}/claim.json"))["abandoned"] is True
    assert json.loads(store.get_bytes(BUCKET, "m/v3/claim.json"))["reason"] == \
        "partial (no metadata.json), found by a later writer"
    assert "removed what was left of abandoned v1: m/v1/model.joblib" in caplog.messages
    assert "removed what was left of abandoned v2: m/v2/model.joblib" in caplog.messages
    assert ("removed partial v3 (no metadata.json): s3://models/m/v3/ is marked abandoned and emptied (never served)"
            in caplog.messages)
    assert not [key for op, key in store.calls if op == "get" and key.endswith("model.joblib")]  # no hashing


def test_production_state_without_a_pointer_and_with_a_stale_copy(diabetes, ridge_models, evaluated):
    store = MemStore(objects={BUCKET: {}})
    registry = Registry(store, BUCKET, "m")
    assert registry.production_state() == (True, "no production model")
    store.put_bytes(BUCKET, "m/production/model.joblib", b"orphan")
    assert registry.production_state() == (
        False, "no production.json, but s3://models/m/production/ holds 1 object(s) of no known version")
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    assert registry.production_state() == (True, "s3://models/m/production/ holds v3")
    store.copy(BUCKET, "m/v2/metadata.json", "m/production/metadata.json")  # the model is v3's, its metadata not
    assert registry.production_state() == (False, "s3://models/m/production/ does not hold v3 (production.json)")
    assert registry.production_state(registry.current()) == registry.production_state()


def test_a_repair_of_production_copies_then_logs_the_state_and_drops_a_newer_skops(diabetes, ridge_models,
                                                                                    evaluated, caplog):
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)
    store.remove(BUCKET, "m/v3/model.skops")  # v3 as pushed before skops existed
    store.put_bytes(BUCKET, "m/production/model.joblib", b"stale")
    with caplog.at_level("INFO", logger="components.registry"):
        assert registry.sync_production() is True
    assert not store.exists(BUCKET, "m/production/model.skops")  # never v3's pickle beside another's skops
    assert "s3://models/m/production/ holds v3" in caplog.messages  # said after copying


def test_a_production_folder_that_keeps_changing_is_an_error_after_the_last_round(diabetes, ridge_models,
                                                                                   evaluated):
    store = MemStore()
    registry = _three_versions(store, diabetes, ridge_models, evaluated)

    def spoil(op, key):  # another writer keeps putting an old model back after each copy
        if op == "copy" and key == "m/production/metadata.json":
            store.objects[BUCKET]["m/production/model.joblib"] = b"old"
    store.put_bytes(BUCKET, "m/production/model.joblib", b"stale")
    store.before_write = spoil
    with pytest.raises(RegistryError, match=rf"does not hold v3 \(production.json\) after {reg.MAX_SYNC_ROUNDS} "
                                            "copies: production keeps moving; run again$"):
        registry.sync_production()
