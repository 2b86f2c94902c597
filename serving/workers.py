"""The ``--workers`` processes, quiet when Ctrl-C lands while one is still starting.

A spawned worker unpickles its task before anything else, and the task's class lives here, so
the lines below run before the worker's heavy imports. While the parent spawns, it marks the
environment; a worker that sees the mark ignores SIGINT until uvicorn installs its own handlers.
Before this, a Ctrl-C to the process group interrupted a worker half-way through an import and
printed a traceback. The parent still handles Ctrl-C and stops its workers with SIGTERM.
"""

from __future__ import annotations

import os
import signal

SPAWNING_ENV = "SERVING_SPAWNED_WORKER"

if os.environ.get(SPAWNING_ENV) == "1":
    signal.signal(signal.SIGINT, signal.SIG_IGN)

# After the signal setting above, on purpose: these imports are the slow part of a worker's start.
from kserve.logging import logger  # noqa: E402
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess  # noqa: E402


class WorkerProcess(RESTServerProcess):
    """kserve's worker process; only its module differs, see above."""


class WorkerProcesses(RESTServerMultiProcess):
    """kserve's --workers supervisor, spawning WorkerProcess with the environment marked."""

    def init_processes(self, sockets: list) -> None:
        os.environ[SPAWNING_ENV] = "1"
        try:
            for _ in range(self._rest_server.config.workers):
                process = WorkerProcess(sockets, self._rest_server.run, log_config_file=self.log_config_file)
                self._processes.append(process)
                process.start()
                logger.info("Started child process [%s]", process.pid)
        finally:
            del os.environ[SPAWNING_ENV]
