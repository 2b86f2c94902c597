"""Conditional writes end to end: on moto's S3 server, which refuses a second `If-None-Match: *` PUT
and a stale `If-Match` with 412 as MinIO and AWS S3 do, concurrent pushes need no lock; and what
ObjectStore really puts on the wire, captured by a loopback server.

rclone, the local default, ignores both headers (test_push.py covers it, under the lock).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from components import push, registry as reg
from components.errors import ObjectAlreadyExists, PreconditionFailed
from components.objectstore import ObjectStore, StoreSettings
from components.registry import Guard, Registry
from pipelines.local.s3server import free_port

NOW = dt.datetime(2026, 12, 2, 9, 0, tzinfo=dt.timezone.utc)
RUNS, TRIALS = 3, 10
KEYS = {"MINIO_ACCESS_KEY": "local-only-moto", "MINIO_SECRET_KEY": "local-only-moto-secret"}


@pytest.fixture(scope="module")
def moto_endpoint() -> str:
    server_module = pytest.importorskip("moto.server", reason="moto (test extra) is not installed: "
                                                              "conditional writes on moto NOT tested")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    try:
        yield f"127.0.0.1:{server._port}"
    finally:
        server.stop()


@pytest.fixture
def moto(moto_endpoint, monkeypatch) -> StoreSettings:
    # No lock: on a store that honours the conditions, the headers alone must keep pushes apart.
    monkeypatch.delenv(reg.LOCK_FILE_ENV, raising=False)
    return StoreSettings.from_env(moto_endpoint, False, env=KEYS)


class Rendezvous(ObjectStore):
    """Holds this push's first PUT of a key ending with `suffix` until every push has reached its own.

    So all of them read the same state and then write at once: each claims the same v1, or swaps
    production.json against the same ETag. Only the server's conditions can sort them out.
    """

    def __init__(self, settings: StoreSettings, barrier: threading.Barrier, suffix: str,
                 refused: list[str] | None = None) -> None:
        super().__init__(settings)
        self.barrier, self.suffix, self.held = barrier, suffix, False
        self.refused = [] if refused is None else refused  # keys the server refused (412), all pushes

    def put_bytes(self, bucket, key, data, content_type="application/octet-stream", if_absent=False, if_match=None):
        if key.endswith(self.suffix) and not self.held:
            self.held = True
            try:
                self.barrier.wait(timeout=20)
            except threading.BrokenBarrierError:  # another push failed first: reported by race()
                pass
        try:
            return super().put_bytes(bucket, key, data, content_type, if_absent, if_match)
        except PreconditionFailed:
            self.refused.append(key)
            raise


class IgnoringConditions(Rendezvous):
    """The same, on a store that drops the conditions (what rclone does): the control of the experiment."""

    def put_bytes(self, bucket, key, data, content_type="application/octet-stream", if_absent=False, if_match=None):
        return super().put_bytes(bucket, key, data, content_type)


def race(make_store, models, diabetes, evaluated, bucket: str, guard=None, errors: list | None = None
         ) -> dict[int, push.PushResult]:
    """RUNS pushes released together, each with its own store; their results by index.

    A push that fails fails the test, unless `errors` is given: then the errors are put there.
    """
    allowed = errors is not None
    errors = [] if errors is None else errors
    results: dict[int, push.PushResult] = {}
    start = threading.Barrier(RUNS)

    def one(index: int) -> None:
        try:
            store = make_store()
            start.wait(timeout=20)
            results[index] = push.run(model_dir=models[index], schema_path=diabetes.schema, evaluation_path=evaluated,
                                      model_name="m", bucket=bucket, store=store, run_id=f"run-{index}", now=NOW,
                                      guard=guard)
        except Exception as exc:  # reported below, with the trial
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(RUNS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert allowed or not errors, errors
    return results


def assert_nothing_lost_or_mixed(settings, bucket, results, models) -> None:
    """Distinct versions; each run's report matches what the store holds; the pointer's history is whole."""
    store = ObjectStore(settings)
    assert sorted(r.version for r in results.values()) == list(range(1, RUNS + 1))
    for index, result in results.items():
        metadata = json.loads(store.get_bytes(bucket, f"m/v{result.version}/metadata.json"))
        assert metadata["run_id"] == f"run-{index}"
        assert store.get_bytes(bucket, f"m/v{result.version}/model.joblib") == \
            (models[index] / "model.joblib").read_bytes()
    registry = Registry(store, bucket, "m")
    pointer = registry.current()
    history = registry.history()
    # Every promotion a run reported is one history entry; none was swapped over and lost.
    assert [e["seq"] for e in history] == list(range(1, pointer.seq + 1))
    assert sorted(e["version"] for e in history) == sorted(r.version for r in results.values() if r.promoted)
    assert history[-1]["version"] == pointer.version
    assert registry.complete_version(pointer.version).metadata["sha256"] == pointer.sha256
    assert registry.production_state()[0]


def test_moto_honours_both_conditions_so_no_lock_is_needed(moto):
    store, bucket = ObjectStore(moto), f"t-{uuid.uuid4().hex[:8]}"
    store.ensure_bucket(bucket)
    assert reg.conditional_writes(store, bucket) is True
    assert type(reg.guard_for(store, bucket, env={})) is Guard  # conditional, without REGISTRY_LOCK_FILE
    etag = store.put_bytes(bucket, "k", b"1", if_absent=True)
    with pytest.raises(ObjectAlreadyExists):
        store.put_bytes(bucket, "k", b"2", if_absent=True)
    newer = store.put_bytes(bucket, "k", b"3", if_match=etag)
    with pytest.raises(PreconditionFailed, match="changed since it was read"):
        store.put_bytes(bucket, "k", b"4", if_match=etag)  # stale now
    assert store.get_versioned(bucket, "k") == (b"3", newer)


@pytest.mark.integration
@pytest.mark.parametrize("suffix", ["/claim.json", "m/production.json"], ids=["same-version", "same-pointer-etag"])
def test_pushes_forced_to_collide_on_moto_get_distinct_versions_and_lose_no_promotion(
        moto, diabetes, ridge_models, evaluated, suffix):
    for trial in range(TRIALS // 2):
        bucket = f"t-{uuid.uuid4().hex[:8]}"
        barrier, refused = threading.Barrier(RUNS), []
        results = race(lambda: Rendezvous(moto, barrier, suffix, refused), ridge_models, diabetes, evaluated, bucket)
        # They did collide: the server refused all but one of the simultaneous writes.
        assert len([key for key in refused if key.endswith(suffix)]) >= RUNS - 1, (trial, refused)
        assert_nothing_lost_or_mixed(moto, bucket, results, ridge_models)
        assert all(r.promoted for r in results.values())  # same score: each is "not worse" when it swaps


@pytest.mark.integration
def test_pushes_released_together_on_moto_lose_and_mix_nothing(moto, diabetes, ridge_models, evaluated):
    for _ in range(TRIALS):
        bucket = f"t-{uuid.uuid4().hex[:8]}"
        results = race(lambda: ObjectStore(moto), ridge_models, diabetes, evaluated, bucket)
        assert_nothing_lost_or_mixed(moto, bucket, results, ridge_models)


@pytest.mark.integration
def test_the_same_collision_without_the_conditions_does_lose_versions(moto, diabetes, ridge_models, evaluated):
    """The control: what the headers prevent really happens when a store drops them (and no lock is held)."""
    bucket = f"t-{uuid.uuid4().hex[:8]}"
    barrier, errors = threading.Barrier(RUNS), []
    results = race(lambda: IgnoringConditions(moto, barrier, "/claim.json"), ridge_models, diabetes, evaluated,
                   bucket, guard=Guard(), errors=errors)
    # All three claimed the same v1 and wrote into it: runs failed (their model or metadata was
    # overwritten under them), or runs report a v1 that holds another run's model.
    assert errors or [r.version for r in results.values()].count(1) > 1, results
    if not errors:
        with pytest.raises(AssertionError):
            assert_nothing_lost_or_mixed(moto, bucket, results, ridge_models)


# ---- what goes on the wire -------------------------------------------------------------------

class Recorder(ThreadingHTTPServer):
    """Answers every PUT as S3 does (200 and an ETag, or 412 when told to) and keeps its headers."""

    def __init__(self) -> None:
        self.puts: list[dict[str, str]] = []
        self.refuse = False
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self):  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                recorder.puts.append({k.lower(): v for k, v in self.headers.items()})
                if recorder.refuse:
                    body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>'
                            b'<Message>At least one of the pre-conditions you specified did not hold</Message>'
                            b'<Resource>/bkt/k</Resource><RequestId>1</RequestId></Error>')
                    self.send_response(412)
                    self.send_header("Content-Type", "application/xml")
                else:
                    body = b""
                    self.send_response(200)
                    self.send_header("ETag", '"0123456789abcdef0123456789abcdef"')
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # quiet
                pass

        super().__init__(("127.0.0.1", 0), Handler)


@pytest.fixture
def recorder():
    server = Recorder()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_the_conditions_go_out_as_real_headers(recorder):
    store = ObjectStore(StoreSettings.from_env(f"127.0.0.1:{recorder.server_address[1]}", False, env=KEYS))
    assert store.put_bytes("bkt", "plain", b"x") == "0123456789abcdef0123456789abcdef"
    assert store.put_bytes("bkt", "new", b"x", if_absent=True) == "0123456789abcdef0123456789abcdef"
    store.put_bytes("bkt", "swap", b"x", if_match="fedcba9876543210fedcba9876543210")
    plain, absent, match = recorder.puts
    assert "if-none-match" not in plain and "if-match" not in plain
    assert absent["if-none-match"] == "*" and "if-match" not in absent
    assert match["if-match"] == '"fedcba9876543210fedcba9876543210"' and "if-none-match" not in match
    for headers in (absent, match):
        # Signed, so no proxy can strip them unnoticed; and not demoted to user metadata.
        signed = headers["authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        assert ("if-none-match" if headers is absent else "if-match") in signed
        assert not any(name.startswith("x-amz-meta-") for name in headers)

    recorder.refuse = True
    with pytest.raises(ObjectAlreadyExists):
        store.put_bytes("bkt", "new", b"x", if_absent=True)
    with pytest.raises(PreconditionFailed, match="changed since it was read"):
        store.put_bytes("bkt", "swap", b"x", if_match="fedcba9876543210fedcba9876543210")
