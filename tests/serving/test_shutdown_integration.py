"""The real server stops on SIGTERM (Kubernetes) and SIGINT (Ctrl-C): parent and every worker, promptly.

Every process the server starts inherits a marker in its environment, so the test finds them
all by that marker, orphans included (a worker whose parent died is re-parented and would
otherwise escape a walk of the process tree).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from pipelines.local.s3server import free_port

pytestmark = pytest.mark.integration

MODEL = "diabetes-rf"
MARKER_ENV = "SERVING_SHUTDOWN_TEST"
START_TIMEOUT_S = 60.0  # two workers on a busy 2-core machine
STOP_TIMEOUT_S = 10.0  # "promptly": Kubernetes' default grace is 30 s before SIGKILL
WORKER_UP = "Application startup complete"  # uvicorn, once per worker process
WORKER_SPAWNED = "Started child process"


def processes_with(marker: str) -> set[int]:
    """Live (not zombie) processes whose environment holds MARKER_ENV=marker."""
    needle = f"{MARKER_ENV}={marker}".encode()
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0") and \
                    (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.add(int(proc.name))
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return found


class ServerProcess:
    """``python -m serving`` on free loopback ports; its stderr lines are collected as they come."""

    def __init__(self, model_dir: Path, workers: int) -> None:
        self.marker = uuid.uuid4().hex
        self.http_port = free_port()
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--model_dir", str(model_dir), "--model_name", MODEL,
             "--host", "127.0.0.1", "--http_port", str(self.http_port), "--grpc_port", str(free_port()),
             "--workers", str(workers)],
            env={**os.environ, MARKER_ENV: self.marker}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,  # its own process group, as under a terminal or as a container's PID 1
        )
        threading.Thread(target=self._collect, daemon=True).start()

    def _collect(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            self._new.put(line)

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def wait_for_line(self, text: str, count: int = 1) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while sum(text in line for line in self.lines) < count:
            assert self.proc.poll() is None, f"server exited early:\n{self.log}"
            assert time.monotonic() < deadline, f"{text!r} not logged within {START_TIMEOUT_S}s:\n{self.log}"
            try:
                self._new.get(timeout=0.2)
            except queue.Empty:
                pass

    def wait_ready(self, workers: int) -> None:
        self.wait_for_line(WORKER_UP, count=workers)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            assert time.monotonic() < deadline, f"not ready within {START_TIMEOUT_S}s:\n{self.log}"
            time.sleep(0.1)

    def kill_all(self) -> None:
        for pid in processes_with(self.marker):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


# Kubernetes sends SIGTERM to the container's main process only; Ctrl-C sends SIGINT to the
# terminal's whole process group, workers included.
@pytest.mark.parametrize(
    "workers, sig, to_group, when",
    [
        pytest.param(2, signal.SIGTERM, False, "ready", id="2-workers-SIGTERM"),
        pytest.param(2, signal.SIGINT, True, "ready", id="2-workers-ctrl-c"),
        # The window that crashed kserve's own stop: the parent is still spawning worker 2.
        pytest.param(2, signal.SIGTERM, False, "spawning", id="2-workers-SIGTERM-while-starting"),
        pytest.param(2, signal.SIGINT, True, "spawning", id="2-workers-ctrl-c-while-starting"),
        pytest.param(1, signal.SIGTERM, False, "ready", id="1-worker-SIGTERM"),
    ],
)
def test_signal_stops_parent_and_workers(regressor_dir: Path, workers: int, sig: signal.Signals, to_group: bool,
                                         when: str) -> None:
    server = ServerProcess(regressor_dir, workers)
    try:
        if when == "ready":
            server.wait_ready(workers)
            serving = 1 + (workers if workers > 1 else 0)  # the parent, and with --workers N its N workers
        else:
            server.wait_for_line(WORKER_SPAWNED)
            serving = 2  # the parent and the first worker
        assert len(processes_with(server.marker)) >= serving, server.log  # the marker finds them
        if to_group:
            os.killpg(server.proc.pid, sig)
        else:
            server.proc.send_signal(sig)
        signalled = time.monotonic()
        deadline = signalled + STOP_TIMEOUT_S
        while (alive := processes_with(server.marker)) and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - signalled
        assert not alive, f"still running {STOP_TIMEOUT_S}s after {sig.name}: pids {sorted(alive)}\n{server.log}"
        code = server.proc.wait(timeout=1)
        print(f"{workers} worker(s), {sig.name} when {when}: every process gone in {took:.2f}s")
    finally:
        server.kill_all()
    assert code == 0, f"exit code {code} after {sig.name}:\n{server.log}"
    # Everything on stderr is a structured log line: no traceback, no crash report.
    raw = [line for line in server.log.splitlines() if not line.startswith("{")]
    # Also when Ctrl-C lands while a worker is still importing (serving/workers.py).
    assert raw == [], server.log
    with pytest.raises(OSError):  # nothing listens any more
        urllib.request.urlopen(f"http://127.0.0.1:{server.http_port}/v2/health/live", timeout=1)
