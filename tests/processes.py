"""Find and end the processes a test started, by a marker in their environment.

A child inherits its parent's environment, so every descendant of a process started with
``{MARKER_ENV: marker}`` carries it: orphans re-parented to init included, which a walk of the
process tree from the test's child would miss.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

MARKER_ENV = "TEST_PROCESS_MARKER"


def new_marker() -> str:
    return uuid.uuid4().hex


def tagged(marker: str, env_name: str = MARKER_ENV) -> set[int]:
    """Live (not zombie) processes whose environment holds env_name=marker."""
    needle = f"{env_name}={marker}".encode()
    found = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0") and \
                    (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                found.add(int(proc.name))
        except (OSError, IndexError):
            continue  # gone meanwhile, or not ours to read
    return found


def wait_gone(marker: str, timeout: float, env_name: str = MARKER_ENV) -> set[int]:
    """The tagged processes still alive after up to `timeout` seconds (empty when all ended)."""
    deadline = time.monotonic() + timeout
    while (alive := tagged(marker, env_name)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def kill_tagged(marker: str, env_name: str = MARKER_ENV) -> None:
    """SIGKILL every tagged process (a teardown's last resort, after a polite stop)."""
    for pid in tagged(marker, env_name):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def default_sigint() -> None:
    """preexec_fn: give the child Ctrl-C's default back. A process that inherits an ignored SIGINT
    (a background job of a non-interactive shell, nohup-style CI runners) keeps it ignored across
    exec, and Python then never raises KeyboardInterrupt: a test's SIGINT would do nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def end_group(pid: int, marker: str, timeout: float = 10.0, env_name: str = MARKER_ENV) -> set[int]:
    """Teardown: SIGTERM to the process group led by pid (a child started with
    start_new_session=True), SIGKILL to whatever carries the marker after `timeout`.
    Returns the pids that needed the SIGKILL (a test may assert there were none)."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    left = wait_gone(marker, timeout, env_name)
    kill_tagged(marker, env_name)
    return left
