"""Fixtures shared by every test folder: the loopback S3 server and its settings; and the
session's process-leak check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines.local.s3server import LocalS3Server
from tests.processes import kill_tagged, new_marker, wait_gone

# Every process the session starts inherits this marker (tests pass {**os.environ, ...} on), so
# whatever is still alive at the end was left behind by a test, however it was started.
SESSION_MARKER_ENV = "TEST_SESSION_MARKER"
LEAK_GRACE_S = 5.0  # a teardown's SIGTERM may still be landing


def pytest_configure(config) -> None:
    config.stash[_marker_key] = os.environ[SESSION_MARKER_ENV] = new_marker()


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def pytest_sessionfinish(session, exitstatus) -> None:
    marker = session.config.stash[_marker_key]
    left = wait_gone(marker, LEAK_GRACE_S, SESSION_MARKER_ENV) - {os.getpid()}
    if not left:
        return
    described = {pid: _command_line(pid) for pid in sorted(left)}
    kill_tagged(marker, SESSION_MARKER_ENV)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"process leak: {len(left)} process(es) started by the tests were still running at the end "
             "(now killed); a test's teardown must stop what it starts:"]
    lines += [f"  pid {pid}: {cmd}" for pid, cmd in described.items()]
    if reporter:
        reporter.write("\n")
        for line in lines:
            reporter.write_line(line, red=True)
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_marker_key = pytest.StashKey[str]()

IMAGE_TESTS = "tests/images/"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The image tests go last: in CI the images are being built in the background meanwhile (.ci/run)."""
    items.sort(key=lambda item: item.nodeid.startswith(IMAGE_TESTS))  # stable: the others keep their order


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory) -> LocalS3Server:
    """One rclone S3 server for the session, on a free loopback port, data in a temp folder."""
    with LocalS3Server(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """Point MINIO_* and AWS_* at the session's S3 server for one test."""
    env = s3_server.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
