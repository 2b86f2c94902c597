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
