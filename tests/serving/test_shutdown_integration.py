"""The real server stops on SIGTERM (Kubernetes) and SIGINT (Ctrl-C): parent and every worker, promptly.

The server's processes are found by the marker ServingProcess puts in their environment.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path

import pytest

from serving_process import ServingProcess

pytestmark = pytest.mark.integration

STOP_TIMEOUT_S = 10.0  # "promptly": Kubernetes' default grace is 30 s before SIGKILL
WORKER_UP = "Application startup complete"  # uvicorn, once per worker process
WORKER_SPAWNED = "Started child process"


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
    server = ServingProcess(regressor_dir, "--workers", str(workers))
    try:
        if when == "ready":
            server.wait_for_line(WORKER_UP, count=workers)
            server.wait_ready()
            serving = 1 + (workers if workers > 1 else 0)  # the parent, and with --workers N its N workers
        else:
            server.wait_for_line(WORKER_SPAWNED)
            serving = 2  # the parent and the first worker
        assert len(server.alive()) >= serving, server.log  # the marker finds them
        if to_group:
            os.killpg(server.proc.pid, sig)
        else:
            server.proc.send_signal(sig)
        signalled = time.monotonic()
        deadline = signalled + STOP_TIMEOUT_S
        while (alive := server.alive()) and time.monotonic() < deadline:
            time.sleep(0.05)
        took = time.monotonic() - signalled
        assert not alive, f"still running {STOP_TIMEOUT_S}s after {sig.name}: pids {sorted(alive)}\n{server.log}"
        code = server.proc.wait(timeout=1)
        print(f"{workers} worker(s), {sig.name} when {when}: every process gone in {took:.2f}s")
    finally:
        server.kill()
    assert code == 0, f"exit code {code} after {sig.name}:\n{server.log}"
    # Everything on stderr is a structured log line: no traceback, no crash report.
    raw = [line for line in server.log.splitlines() if not line.startswith("{")]
    # Also when Ctrl-C lands while a worker is still importing (serving/workers.py).
    assert raw == [], server.log
    with pytest.raises(OSError):  # nothing listens any more
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/v2/health/live", timeout=1)
