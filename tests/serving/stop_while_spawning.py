"""Run as a script by test_workers.py: a stop while a worker still reads its pickled task.

``python stop_while_spawning.py WORKERS sleeps|dies``: the worker's task sleeps (or the worker
exits, as one hit by Ctrl-C before it could ignore it) while it is being unpickled, before the
megabytes that follow it, so the parent's write into the spawn pipe is blocked when the stop
lands: the window in which, on a busy machine, the real server used to hang (see
serving/workers.py). Exits 0 once ``WorkerProcesses.start`` has returned, printing how long the
stop took.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import sys
import time
from types import SimpleNamespace

import psutil

from serving.workers import WorkerProcesses

TASK_BYTES = 8 << 20  # far beyond a pipe's 64 KiB buffer
UNPICKLE_SLEEP_S = 120.0  # longer than the test waits: only the stop can end it


class SleepWhenUnpickled:
    def __reduce__(self):
        return time.sleep, (UNPICKLE_SLEEP_S,)


class DieWhenUnpickled:
    def __reduce__(self):
        return os._exit, (1,)


WHEN_UNPICKLED = {"sleeps": SleepWhenUnpickled, "dies": DieWhenUnpickled}


def supervisor(workers: int, worker: str) -> WorkerProcesses:
    """kserve's supervisor without a RESTServer: only what ``start`` and ``terminate_all`` read."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = SimpleNamespace(workers=workers, bind_socket=lambda: listener, timeout_graceful_shutdown=5)
    task = functools.partial(print, WHEN_UNPICKLED[worker](), b"\0" * TASK_BYTES)
    processes = WorkerProcesses.__new__(WorkerProcesses)
    processes.log_config_file = None
    processes._processes = []
    processes.should_exit = asyncio.Event()
    processes._rest_server = SimpleNamespace(config=config, run=task)
    return processes


def spawned_children() -> list[psutil.Process]:
    """Live or dead (zombie, not reaped yet) children but the resource tracker."""
    found = []
    for child in psutil.Process().children():
        try:
            if child.status() == psutil.STATUS_ZOMBIE or "resource_tracker" not in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            pass
    return found


def live_children() -> list[psutil.Process]:
    live = []
    for child in spawned_children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                live.append(child)
        except psutil.NoSuchProcess:  # reaped meanwhile
            pass
    return live


async def main(workers: int, worker: str) -> None:
    processes = supervisor(workers, worker)
    started = asyncio.ensure_future(processes.start())
    while not spawned_children():
        await asyncio.sleep(0.05)
    if worker == "dies":
        while live_children():  # it imports kserve first (the task's class is in serving.workers)
            await asyncio.sleep(0.05)
    else:
        await asyncio.sleep(0.5)  # the child is now asleep inside the unpickling, the parent's write blocked
    stop = time.monotonic()
    processes.should_exit.set()
    await started
    print(f"stopped in {time.monotonic() - stop:.2f}s; children left: {len(live_children())}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
