"""kill -9 of the REAL rclone process (pipelines.local.s3server) in the middle of a push.

A loopback relay sits between the push and rclone and sends SIGKILL to rclone at one request of
the push: inside the model's body (rclone has part of it), or as a request arrives (the claim, the
metadata, the pointer's swap, a production/ copy). rclone is then started again on the same data
folder, as `make run` would. Readers must find a complete version, no partial one counted, and the
next push must work and clean up what the killed one left (test_push.py injects the same points as
client-side failures; this is the store itself dying).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import threading

import pytest

from components import push
from components.errors import PipelineError
from components.objectstore import ObjectStore, StoreSettings
from components.registry import Registry
from pipelines.local.s3server import LocalS3Server

NOW = dt.datetime(2026, 12, 2, 10, 0, tzinfo=dt.timezone.utc)
BUCKET = "models"
# Bytes of the model's body that reach rclone before it is killed (the model is several MB).
BODY_BYTES_BEFORE_KILL = 64 * 1024


class KillingRelay:
    """Forwards TCP to rclone; the first time `request` ("PUT /models/m/v2/model.joblib") goes by, it
    forwards `after` more bytes of it, then kills rclone with SIGKILL (and drops the connections)."""

    def __init__(self, server: LocalS3Server, request: bytes, after: int) -> None:
        self.server, self.request, self.after = server, request, after
        self.killed = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection((self.server.host, self.server.port))
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
        self._pipe(client, upstream, True)

    def _pipe(self, source: socket.socket, target: socket.socket, watch: bool) -> None:
        tail, left = b"", None  # left: bytes still to forward before the kill, once the request is seen
        try:
            while data := source.recv(16384):
                if watch and left is None and not self.killed.is_set():
                    window = tail + data
                    at = window.find(self.request)
                    tail = window[-len(self.request):]
                    if at >= 0:  # where the request starts in data (< 0: in the chunk before)
                        left = at - (len(window) - len(data)) + len(self.request) + self.after
                if left is None:
                    target.sendall(data)
                    continue
                target.sendall(data[:left])
                if left <= len(data):
                    self._kill()
                    break
                left -= len(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                sock.close()

    def _kill(self) -> None:
        proc = self.server._proc
        assert proc is not None
        threading.Event().wait(0.2)  # let rclone write what it received to disk
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        self.killed.set()


def do_push(store, diabetes, model_dir, evaluated, run_id):
    return push.run(model_dir=model_dir, schema_path=diabetes.schema, evaluation_path=evaluated, model_name="m",
                    bucket=BUCKET, store=store, run_id=run_id, now=NOW)


def store_at(server: LocalS3Server, port: int | None = None) -> ObjectStore:
    return ObjectStore(StoreSettings.from_env(f"{server.host}:{port or server.port}", False, env=server.env()))


# The request at which rclone dies, bytes of it forwarded first; then whether v2 is complete, whether
# production.json had moved to it, and the number the next push takes (a claimed number is never reused).
KILL_POINTS = [
    (b"PUT /models/m/v2/claim.json ", 0, False, False, 2),
    (b"PUT /models/m/v2/model.joblib ", BODY_BYTES_BEFORE_KILL, False, False, 3),  # a truncated model on disk
    (b"PUT /models/m/v2/metadata.json ", 0, False, False, 3),
    (b"PUT /models/m/production.json ", 0, True, False, 3),  # v2 complete, production still v1
    (b"PUT /models/m/history/00000002.json ", 0, True, True, 3),
    (b"PUT /models/m/production/model.joblib ", 0, True, True, 3),  # the copy: pointer moved, production/ stale
    (b"PUT /models/m/production/metadata.json ", 0, True, True, 3),
]


@pytest.mark.integration
@pytest.mark.parametrize(("request_line", "after", "complete", "moved", "next_version"), KILL_POINTS,
                         ids=[point[0].split(b" ")[1].decode().removeprefix("/models/m/") for point in KILL_POINTS])
def test_rclone_killed_mid_push_leaves_no_partial_version_and_the_next_push_works(
        tmp_path, monkeypatch, diabetes, diabetes_rf, ridge_models, evaluated, request_line, after, complete, moved,
        next_version):
    data = tmp_path / "s3"
    big = (diabetes_rf / "model.joblib").read_bytes()
    assert len(big) > 4 * BODY_BYTES_BEFORE_KILL  # so the kill lands inside the body
    with LocalS3Server(data) as server:
        for key, value in server.env().items():  # the lock that serialises writers of rclone
            monkeypatch.setenv(key, value)
        assert do_push(store_at(server), diabetes, ridge_models[0], evaluated, "run-1").version == 1
        relay = KillingRelay(server, request_line, after)
        try:
            with pytest.raises(PipelineError):
                do_push(store_at(server, relay.port), diabetes, diabetes_rf, evaluated, "run-killed")
        finally:
            relay.close()
        assert relay.killed.is_set(), "rclone was not killed: the request was never seen"
        assert server._proc.poll() == -signal.SIGKILL
    if request_line.startswith(b"PUT /models/m/v2/model.joblib"):
        on_disk = data / BUCKET / "m" / "v2" / "model.joblib"
        # rclone 1.75 reads a whole body before it writes the file (it checks the checksum), so it kept
        # nothing here; a store that keeps what it got would leave a prefix, a truncated model. Both
        # must read as a partial v2 below.
        assert not on_disk.exists() or (on_disk.stat().st_size < len(big) and big.startswith(on_disk.read_bytes()))
        assert not list(on_disk.parent.glob("model.joblib?*"))  # no rclone .partial temp left as an object

    with LocalS3Server(data) as restarted:  # the same folder, as the next `make run` starts it
        for key, value in restarted.env().items():
            monkeypatch.setenv(key, value)
        store = store_at(restarted)
        registry = Registry(store, BUCKET, "m")
        pointer = registry.current()
        assert pointer.version == (2 if moved else 1)
        assert registry.complete_version(pointer.version).metadata["sha256"] == pointer.sha256
        counted = [v.number for v in registry.versions(verify=True) if v.complete]
        assert counted == ([1, 2] if complete else [1])  # a partial v2 is never counted
        assert registry.production_state()[0] or moved  # production/ lags only a pointer that moved

        following = do_push(store, diabetes, ridge_models[2], evaluated, "run-after")
        assert following.promoted and following.version == next_version
        registry = Registry(store, BUCKET, "m")
        pointer = registry.current()
        assert pointer.version == following.version
        assert store.get_bytes(BUCKET, f"m/v{pointer.version}/model.joblib") == \
            (ridge_models[2] / "model.joblib").read_bytes()
        consistent, state = registry.production_state()
        assert consistent, state  # production/ repaired to the pointer
        for info in registry.versions(verify=True):  # what the killed push left is a tombstone, or gone
            assert info.complete or list(info.keys) == [f"m/v{info.number}/claim.json"], info
        history = registry.history()
        assert [e["seq"] for e in history] == list(range(1, pointer.seq + 1))
        assert json.loads(store.get_bytes(BUCKET, "m/production/metadata.json"))["version"] == pointer.version
