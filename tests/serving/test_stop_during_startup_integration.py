"""`python -m serving --workers 2` stopped by SIGTERM at any moment of its start-up leaves nothing behind.

Once, a server started by a test ignored SIGTERM and was left running. The moments here are the
windows of the start-up: the parent still importing, the parent about to spawn, a child just
forked (found by polling the process tree, before it exec'd or imported anything), the first
worker up while the second is spawned, and the workers importing kserve. Every process carrying
the server's marker must be gone within the grace period Kubernetes gives (STOP_TIMEOUT_S here).
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from serving_process import ServingProcess

pytestmark = pytest.mark.integration

STOP_TIMEOUT_S = 10.0  # well inside Kubernetes' default 30 s grace
FIRST_CHILD_TIMEOUT_S = 90.0  # a loaded 2-core machine: the parent imports kserve and loads the model first


def _first_child(server: ServingProcess) -> None:
    """Return as soon as the parent has any child process: SIGTERM lands just after a fork."""
    parent = psutil.Process(server.proc.pid)
    deadline = time.monotonic() + FIRST_CHILD_TIMEOUT_S
    while not parent.children():
        assert server.proc.poll() is None, f"server exited early:\n{server.log}"
        assert time.monotonic() < deadline, f"no child within {FIRST_CHILD_TIMEOUT_S}s:\n{server.log}"
        time.sleep(0.002)


MOMENTS = {
    "parent-importing": lambda server: time.sleep(0.3),
    "about-to-spawn": lambda server: server.wait_for_line("Starting uvicorn with 2 workers"),
    "just-after-fork": _first_child,
    "first-worker-spawned": lambda server: server.wait_for_line("Started child process"),
    "workers-importing": lambda server: server.wait_for_line("Started child process", count=2),
}


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_sigterm_during_startup_leaves_no_process(regressor_dir: Path, moment: str) -> None:
    server = ServingProcess(regressor_dir, "--workers", "2")
    try:
        MOMENTS[moment](server)
        server.proc.terminate()  # SIGTERM to the parent only, as the kubelet sends it
        signalled = time.monotonic()
        while (alive := server.alive()) and time.monotonic() < signalled + STOP_TIMEOUT_S:
            time.sleep(0.05)
        took = time.monotonic() - signalled
        left = {pid: _describe(pid) for pid in alive}
        code = server.proc.wait(timeout=5) if not alive else None
    finally:
        server.kill()
    assert not left, f"{moment}: still running {STOP_TIMEOUT_S}s after SIGTERM: {left}\n{server.log}"
    print(f"SIGTERM at {moment}: every process gone in {took:.2f}s (exit {code})")
    # Before the parent installs its handlers, SIGTERM's default ends it; after, it exits 0.
    assert code in (0, -15), f"{moment}: exit code {code}\n{server.log}"
    if moment != "parent-importing":
        assert code == 0, f"{moment}: exit code {code}\n{server.log}"


def _describe(pid: int) -> str:
    try:
        process = psutil.Process(pid)
        return f"{process.status()} {' '.join(process.cmdline())[:120]}"
    except psutil.Error:
        return "gone"


@pytest.mark.parametrize("moment", ["workers-importing", "ready"])
def test_workers_end_when_their_parent_is_killed(regressor_dir: Path, moment: str) -> None:
    """SIGKILL to the parent (the OOM killer, a test's last resort) must not leave workers serving as orphans."""
    server = ServingProcess(regressor_dir, "--workers", "2")
    try:
        if moment == "ready":
            server.wait_for_line("Application startup complete", count=2)
        else:
            MOMENTS[moment](server)
        server.proc.kill()
        killed = time.monotonic()
        while (alive := server.alive()) and time.monotonic() < killed + STOP_TIMEOUT_S:
            time.sleep(0.05)
        took = time.monotonic() - killed
        left = {pid: _describe(pid) for pid in alive}
    finally:
        server.kill()
    assert not left, f"{moment}: orphans still running {STOP_TIMEOUT_S}s after the parent's SIGKILL: {left}"
    print(f"parent SIGKILLed at {moment}: every process gone in {took:.2f}s")
