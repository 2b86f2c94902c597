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

from components import push, registry as reg
from components.errors import ObjectStoreUnreachable, PipelineError, PushError, RegistryError
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
