"""Process control: free ports, a server started pinned to a core in its own group, stopped, its RSS."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .common import READY_TIMEOUT_S, REPO, SERVER_CORE
from .loadtools import pinned

@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    metrics: int


def free_ports() -> Ports:
    from pipelines.local.s3server import free_port

    return Ports(free_port(), free_port(), free_port())


class ServerFailed(RuntimeError):
    pass


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


@contextlib.contextmanager
def running(argv: list[str], ports: Ports, env: dict[str, str], log_path: Path,
            core: str | None = SERVER_CORE, cwd: Path = REPO) -> Iterator[tuple[subprocess.Popen, float]]:
    """Start a server in its own process group; yield it with its start-to-ready seconds; stop it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    ready_url = f"http://127.0.0.1:{ports.http}/v2/health/ready"
    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(pinned(core, argv), stdout=log, stderr=subprocess.STDOUT, cwd=cwd,
                                   env={**os.environ, **env}, start_new_session=True)
        try:
            while http_status(ready_url, timeout=1.0) != 200:
                if process.poll() is not None:
                    raise ServerFailed(f"exited with code {process.returncode}: {_last_line(log_path)}")
                if time.perf_counter() - started > READY_TIMEOUT_S:
                    raise ServerFailed(f"not ready after {READY_TIMEOUT_S:.0f} s: {_last_line(log_path)}")
                time.sleep(0.02)
            yield process, time.perf_counter() - started
        finally:
            _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # the group this harness created: server and its workers
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _last_line(path: Path) -> str:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def rss_by_process(root: int) -> list[tuple[str, float]]:
    """(role, MiB resident) for a process and its descendants, read from Linux /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    result, todo = [], [root]
    while todo:
        pid = todo.pop()
        with contextlib.suppress(OSError, AttributeError):
            mib = int(re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text()).group(1)) / 1024
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            role = "parent" if pid == root else "worker" if b"spawn_main" in cmdline else "helper"
            result.append((role, mib))
        todo.extend(children.get(pid, []))
    return sorted(result, key=lambda item: ("parent", "worker", "helper").index(item[0]))
