"""Run as a script by test_workers.py: a stop while a worker still reads its pickled task.

The worker's task sleeps while it is being unpickled, before the megabytes that follow it, so
the parent's write into the spawn pipe is blocked when the stop lands: the window in which, on
a busy machine, the real server used to hang (see serving/workers.py). Exits 0 once
``WorkerProcesses.start`` has returned, printing how long the stop took.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import sys
import time
from types import SimpleNamespace

import psutil

from serving.workers import SPAWNED_CHILD_MARK, WorkerProcesses

TASK_BYTES = 8 << 20  # far beyond a pipe's 64 KiB buffer
UNPICKLE_SLEEP_S = 120.0  # longer than the test waits: only the stop can end it


class SleepWhenUnpickled:
    def __reduce__(self):
        return time.sleep, (UNPICKLE_SLEEP_S,)


def supervisor(workers: int) -> WorkerProcesses:
    """kserve's supervisor without a RESTServer: only what ``start`` and ``terminate_all`` read."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = SimpleNamespace(workers=workers, bind_socket=lambda: listener, timeout_graceful_shutdown=5)
    task = functools.partial(print, SleepWhenUnpickled(), b"\0" * TASK_BYTES)
    processes = WorkerProcesses.__new__(WorkerProcesses)
    processes.log_config_file = None
    processes._processes = []
    processes.should_exit = asyncio.Event()
    processes._rest_server = SimpleNamespace(config=config, run=task)
    return processes


def spawned_children() -> list[psutil.Process]:
    return [child for child in psutil.Process().children()
            if SPAWNED_CHILD_MARK in " ".join(child.cmdline())]


async def main(workers: int) -> None:
    processes = supervisor(workers)
    started = asyncio.ensure_future(processes.start())
    while not spawned_children():
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # the child is now asleep inside the unpickling, the parent's write blocked
    stop = time.monotonic()
    processes.should_exit.set()
    await started
    print(f"stopped in {time.monotonic() - stop:.2f}s; children left: {len(spawned_children())}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
