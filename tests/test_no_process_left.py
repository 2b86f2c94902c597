"""The suite's process-starting tests pass and leave nothing running when they inherit an ignored
SIGINT, as under `make test &` in a non-interactive shell, nohup, or a CI runner.

A chosen subset runs in a child pytest with SIGINT ignored; every process it starts carries a
marker in its environment, and none may be alive afterwards. (tests/conftest.py also fails any
session that leaves a process behind.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.processes import kill_tagged, new_marker, tagged, wait_gone
from tests.conftest import SESSION_MARKER_ENV

pytestmark = pytest.mark.integration

LEAK_MARKER_ENV = "LEAK_CHECK_MARKER"  # not MARKER_ENV: the tests below set that one per process
RUN_TIMEOUT_S = 420  # the demo trains and pushes a model first (kfp.local) on a loaded machine
# Tests that start servers and stop them with signals, and leaked or hung under an ignored SIGINT.
PROCESS_TESTS = (
    "tests/pipeline/test_s3server.py",
    "tests/serving/test_server_integration.py::test_make_serve_demo_answers_then_stops_on_ctrl_c",
)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_process_tests_leave_nothing_with_sigint_ignored(tmp_path):
    marker = new_marker()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--basetemp", str(tmp_path / "inner"),
             *PROCESS_TESTS],
            env={**os.environ, LEAK_MARKER_ENV: marker}, preexec_fn=_ignore_sigint, start_new_session=True,
            capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )
        left = wait_gone(marker, 5, LEAK_MARKER_ENV)
    finally:
        kill_tagged(marker, LEAK_MARKER_ENV)
    report = done.stdout[-4000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and done.returncode == 0, report
    assert "process leak" not in done.stdout, report
    assert left == set(), f"still running after the tests with SIGINT ignored: {sorted(left)}\n{report}"


def test_leak_scan_sees_a_process_of_the_session():
    """The session marker reaches children, so the end-of-session scan can find them."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # Popen returns once exec is past its point of no return, a moment before the kernel shows
        # the new environment in /proc/PID/environ (seen empty there once in CI): look for a while.
        deadline = time.monotonic() + 5
        while child.pid not in (found := tagged(os.environ[SESSION_MARKER_ENV], SESSION_MARKER_ENV)) \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        assert child.pid in found
    finally:
        child.kill()
        child.wait()
