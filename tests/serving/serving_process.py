"""``python -m serving`` as the integration tests start it: free loopback ports, stderr collected.

Every process the server starts inherits a marker in its environment, so ``alive`` and ``kill``
find them all, orphans included (a worker whose parent died is re-parented and would otherwise
escape a walk of the process tree).
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

from pipelines.local.s3server import free_port
from tests.processes import default_sigint, kill_tagged, tagged

MODEL = "diabetes-rf"
MARKER_ENV = "SERVING_TEST_PROCESS"
START_TIMEOUT_S = 90.0  # a busy 2-core machine, workers and the offload pool importing at once


class ServingProcess:
    """The server in its own process group (as under a terminal, or as a container's PID 1)."""

    def __init__(self, model_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.marker = uuid.uuid4().hex
        self.port = free_port()
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "serving", "--model_dir", str(model_dir), "--model_name", MODEL,
             "--host", "127.0.0.1", "--http_port", str(self.port), "--grpc_port", str(free_port()), *args],
            env={**os.environ, MARKER_ENV: self.marker, **(env or {})},
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
            preexec_fn=default_sigint,  # Ctrl-C live, as at a terminal, even if this run inherited it ignored
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
            assert time.monotonic() < deadline, f"{text!r} not logged {count}x within {START_TIMEOUT_S}s:\n{self.log}"
            try:
                self._new.get(timeout=0.2)
            except queue.Empty:
                pass

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/v2/health/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, f"server exited early:\n{self.log}"
            assert time.monotonic() < deadline, f"not ready within {START_TIMEOUT_S}s:\n{self.log}"
            time.sleep(0.1)

    def alive(self) -> set[int]:
        """Live (not zombie) processes carrying this server's marker."""
        return tagged(self.marker, MARKER_ENV)

    def kill(self) -> None:
        """SIGKILL to every process of the server, then reap the main one."""
        kill_tagged(self.marker, MARKER_ENV)
        self.proc.wait(timeout=30)
