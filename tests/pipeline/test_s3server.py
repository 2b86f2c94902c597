"""`python -m pipelines.local.s3server` stopped the ways a service manager or a test stops it:
rclone goes with it and the port is free again."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

import pytest

from pipelines.local.s3server import free_port
from tests.processes import MARKER_ENV, default_sigint, kill_tagged, new_marker, tagged, wait_gone

pytestmark = pytest.mark.integration

STOP_TIMEOUT_S = 10.0


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def s3server_cli(tmp_path):
    """The CLI on a free port in its own group, Ctrl-C live as at a terminal; yields (proc, port, marker)."""
    port, marker = free_port(), new_marker()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.local.s3server", "--port", str(port), "--data-dir", str(tmp_path / "s3")],
        env={**os.environ, MARKER_ENV: marker}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True, preexec_fn=default_sigint,
    )
    try:
        # The last line it prints once rclone listens (a bounded wait: the test's timeout).
        printed = []
        for line in proc.stdout:
            printed.append(line)
            if line.startswith("export REGISTRY_LOCK_FILE="):
                break
        assert _listening(port), f"s3server not listening on {port}:\n{''.join(printed)}"
        yield proc, port, marker
    finally:
        kill_tagged(marker)
        proc.wait(timeout=STOP_TIMEOUT_S)


def _rclone_pids(marker: str, cli_pid: int) -> set[int]:
    return {pid for pid in tagged(marker) if pid != cli_pid}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_signal_stops_rclone_and_frees_the_port(s3server_cli, sig):
    proc, port, marker = s3server_cli
    assert _rclone_pids(marker, proc.pid), "no rclone child found by the marker: the check would prove nothing"
    proc.send_signal(sig)
    assert proc.wait(timeout=STOP_TIMEOUT_S) == 0
    assert wait_gone(marker, STOP_TIMEOUT_S) == set(), f"rclone left running after {sig.name}"
    assert not _listening(port), f"port {port} still held after {sig.name}"


def test_sigkill_of_the_cli_takes_rclone_down_too(s3server_cli):
    """No handler runs on SIGKILL: the kernel's parent-death signal stops rclone."""
    proc, port, marker = s3server_cli
    assert _rclone_pids(marker, proc.pid)
    proc.kill()
    proc.wait(timeout=STOP_TIMEOUT_S)
    assert wait_gone(marker, STOP_TIMEOUT_S) == set(), "rclone outlived a SIGKILLed s3server"
    assert not _listening(port)
