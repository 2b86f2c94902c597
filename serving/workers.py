"""The ``--workers`` processes: quiet when Ctrl-C lands while one is still starting, and a parent
that answers a stop signal at once, even while it spawns.

A spawned worker unpickles its task before anything else, and the task's class lives here, so
the lines below run before the worker's heavy imports. While the parent spawns, it marks the
environment; a worker that sees the mark ignores SIGINT until uvicorn installs its own handlers.
Before this, a Ctrl-C to the process group interrupted a worker half-way through an import and
printed a traceback. The parent still handles Ctrl-C and stops its workers with SIGTERM.

kserve spawns on the event loop: ``Process.start`` writes the pickled server (the model with it,
megabytes) into a pipe that the child reads only as fast as it imports kserve, seconds on a busy
machine, so a stop signal waited for every worker to finish starting. Here the spawning runs in
a thread; a stop during it terminates the worker being spawned as well as those already up.

Terminating a worker that is still reading that pipe is not enough on its own: the parent keeps
the pipe's read end open until the write returns (``popen_spawn_posix``), so the write never sees
a broken pipe and would block the stop forever. The same holds for a worker that died on its own
while reading (Ctrl-C to the process group lands before it could ignore SIGINT). So each spawn
keeps a duplicate of that read end, taken before the write begins; once the worker being spawned
is dead, the stop reads the rest of the pickle away through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from multiprocessing import popen_spawn_posix
from multiprocessing.context import SpawnProcess

SPAWNING_ENV = "SERVING_SPAWNED_WORKER"

if os.environ.get(SPAWNING_ENV) == "1":
    signal.signal(signal.SIGINT, signal.SIG_IGN)

# After the signal setting above, on purpose: these imports are the slow part of a worker's start.
import psutil  # noqa: E402  (a kserve dependency)
from kserve.logging import logger  # noqa: E402
from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess  # noqa: E402

DRAIN_CHUNK = 1 << 20
LAUNCH_SCAN_S = 0.1  # how often a stop looks for the worker being spawned
HALF_STARTED_GRACE_S = 2.0  # SIGTERM to a worker still starting, then SIGKILL
KEEP_ALIVE_INTERVAL_S = 0.5  # kserve's
PARENT_CHECK_S = 0.5  # how often a worker looks whether its parent is still there
ORPHAN_GRACE_S = 8.0  # an orphaned worker's own stop before it exits hard
ORPHAN_SECOND_SIGNAL_S = 0.2  # then the second SIGTERM: no drain for a worker nobody routes to any more


class _TaskPipePopen(popen_spawn_posix.Popen):
    """multiprocessing's spawn launch, which a stop can unblock while it writes the worker's task.

    Once the child exists and before the write starts (``_launch`` sets ``sentinel`` right then),
    a duplicate of the child's end of the task pipe is taken here, in the spawning thread, so it
    can never be a closed or reused descriptor; the launch is ``blocked`` until the write returns
    or a stop claims that duplicate.
    """

    _blocked: set[_TaskPipePopen] = set()
    _lock = threading.Lock()

    def __init__(self, process_obj: SpawnProcess) -> None:
        self._task_reader: int | None = None
        try:
            super().__init__(process_obj)
        finally:
            reader = self.claim_task_reader()  # the write returned (or failed): no stop needs it
            if reader is not None:
                os.close(reader)

    @property
    def sentinel(self) -> int:
        return self._sentinel

    @sentinel.setter
    def sentinel(self, fd: int) -> None:
        self._sentinel = fd
        # _launch has just added the child's pipe ends (child_r, child_w) to _fds and started it.
        reader = os.dup(self._fds[-2])
        with self._lock:
            self._task_reader = reader
            self._blocked.add(self)

    def claim_task_reader(self) -> int | None:
        """The duplicate of the task pipe's read end, once (then it is the caller's to close)."""
        with self._lock:
            reader, self._task_reader = self._task_reader, None
            self._blocked.discard(self)
        return reader

    @classmethod
    def blocked(cls) -> list[_TaskPipePopen]:
        """The launches whose child is started and whose task write has not returned."""
        with cls._lock:
            return list(cls._blocked)


class _WorkerSpawnProcess(SpawnProcess):
    @staticmethod
    def _Popen(process_obj: SpawnProcess) -> _TaskPipePopen:
        return _TaskPipePopen(process_obj)


class WorkerProcess(RESTServerProcess):
    """kserve's worker process, from this module (see above), ending by its own exit after SIGTERM.

    uvicorn re-raises the SIGTERM it caught once it has shut down; with the default disposition
    the worker then dies by the signal, skipping multiprocessing's exit finalizers, and the
    resource tracker warns about every semaphore the offload pool held. Here that re-raised
    signal is a plain exit.
    """

    def __init__(self, sockets: list, target: object, log_config_file: str | None = None) -> None:
        super().__init__(sockets, target, log_config_file=log_config_file)
        self._process = _WorkerSpawnProcess(target=self.target, args=[sockets])

    def target(self, sockets: list) -> object:
        """The worker's entry point: SIGTERM ends it quietly, then kserve's target serves.

        Args:
            sockets: the listening sockets inherited from the parent.

        Returns:
            What kserve's target returns.
        """
        signal.signal(signal.SIGTERM, _exit_on_signal)
        threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True,
                         name="parent-watch").start()
        return super().target(sockets)


def _exit_on_signal(signum: int, frame: object) -> None:
    sys.exit(0)


def _stop_when_orphaned(parent: int, poll_s: float = PARENT_CHECK_S, grace_s: float = ORPHAN_GRACE_S) -> None:
    """A worker whose parent died (SIGKILL, the OOM killer) stops itself, as if the parent had sent SIGTERM.

    Nothing else would stop it: the parent's terminate_all never runs, and the worker would go on
    serving on the shared socket, its offload pool and the resource tracker with it (seen: five
    processes left 10 s after a SIGKILL of the parent). Two SIGTERMs go through the worker's usual
    stop without its drain (the second signal skips it, see serving.limits.DrainingServer): in-flight
    requests still finish, the pool is stopped; os._exit ends it if that outlasts grace_s.

    Args:
        parent: the parent's pid, read when the worker started.
        poll_s: how often to look.
        grace_s: how long the usual stop may take before the hard exit.

    Returns:
        Nothing: it ends the process.
    """
    while os.getppid() == parent:
        time.sleep(poll_s)
    logger.warning("Parent process [%s] is gone: stopping child process [%s]", parent, os.getpid())
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(ORPHAN_SECOND_SIGNAL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    os._exit(1)


class WorkerProcesses(RESTServerMultiProcess):
    """kserve's --workers supervisor, spawning WorkerProcess off the event loop with the environment marked."""

    def _spawn(self, sockets: list) -> WorkerProcess:
        """A started worker, spawned with the environment marked (blocking: call it off the event loop)."""
        process = WorkerProcess(sockets, self._rest_server.run, log_config_file=self.log_config_file)
        os.environ[SPAWNING_ENV] = "1"
        try:
            process.start()
        finally:
            del os.environ[SPAWNING_ENV]
        return process

    def init_processes(self, sockets: list) -> None:
        """Spawn the --workers processes; stops early, without an error, when a stop arrives meanwhile.

        Args:
            sockets: the listening sockets the workers share.
        """
        try:
            for _ in range(self._rest_server.config.workers):
                if self.should_exit.is_set():
                    return
                process = self._spawn(sockets)
                self._processes.append(process)
                logger.info("Started child process [%s]", process.pid)
        except OSError:
            # The worker being spawned was terminated by a stop (see start): its pipe broke.
            if not self.should_exit.is_set():
                raise

    async def start(self) -> None:
        logger.info("Starting uvicorn with %s workers", self._rest_server.config.workers)
        sockets = [self._rest_server.config.bind_socket()]
        logger.info("Started parent process [%s]", os.getpid())
        spawning = asyncio.ensure_future(asyncio.to_thread(self.init_processes, sockets))
        stopping = asyncio.ensure_future(self.should_exit.wait())
        await asyncio.wait({spawning, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not spawning.done():
            await self._stop_spawning(spawning)
        await spawning  # its error, if it failed before the stop
        while not self.should_exit.is_set():
            await asyncio.sleep(KEEP_ALIVE_INTERVAL_S)
            await self.keep_subprocess_alive(sockets)
        stopping.cancel()
        await self.terminate_all()

    async def keep_subprocess_alive(self, sockets: list) -> None:
        """kserve's restart of a dead worker, as the first ones start: our process class and log set-up.

        kserve restarts with its own process class and no log configuration, so a worker restarted
        after kill -9 logged plain text and a line per request. The new one gets the same pickled
        server (routes, limits, metrics), spawned with the environment marked like the first.

        Args:
            sockets: the listening sockets the workers share.
        """
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self._processes):
            if process.is_alive():
                continue
            process.kill()  # hung, or already gone
            await process.wait_for_termination()
            if self.should_exit.is_set():
                return
            logger.info("Child process [%s] died", process.pid)
            replacement = await asyncio.to_thread(self._spawn, sockets)  # the pickled server is megabytes
            self._processes[index] = replacement
            logger.info("Started new child process [%s]", replacement.pid)

    async def _stop_spawning(self, spawning: asyncio.Future) -> None:
        """Until the spawning thread returns, SIGTERM the worker it is starting, then drain its task pipe.

        A worker still starting has no signal handler yet and ends; one that died already is a
        zombie. Either way the rest of its task is read away only once it is dead: a worker still
        reading would see its task truncated.
        """
        with _PipeDrain() as drain:
            while not spawning.done():
                for popen in _TaskPipePopen.blocked():
                    reader = popen.claim_task_reader()
                    if reader is None:  # its write returned meanwhile
                        continue
                    drain.own(reader)
                    logger.info("Stopping child process [%s] while it starts", popen.pid)
                    with contextlib.suppress(psutil.NoSuchProcess):
                        child = psutil.Process(popen.pid)
                        child.terminate()
                        await _until_dead(child)
                    drain.start(reader)
                await asyncio.wait({spawning}, timeout=LAUNCH_SCAN_S)


async def _until_dead(child: psutil.Process) -> None:
    """Until ``child`` is a zombie or gone (never reaped here: multiprocessing reaps its own), SIGKILL after a while."""
    deadline = asyncio.get_running_loop().time() + HALF_STARTED_GRACE_S
    while True:
        try:
            if child.status() == psutil.STATUS_ZOMBIE:
                return
            if asyncio.get_running_loop().time() > deadline:
                child.kill()
                deadline = float("inf")
        except psutil.NoSuchProcess:
            return
        await asyncio.sleep(0.02)


class _PipeDrain:
    """Reads and discards, on the running loop, what the parent writes into workers' task pipes."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._fds: list[int] = []

    def own(self, fd: int) -> None:
        """Take ``fd`` (a read end): closed when the drain ends."""
        self._fds.append(fd)

    def start(self, fd: int) -> None:
        """Read ``fd`` away; only once its worker is dead (the descriptor's flags are shared with it)."""
        os.set_blocking(fd, False)
        self._loop.add_reader(fd, self._discard, fd)

    def _discard(self, fd: int) -> None:
        try:
            if not os.read(fd, DRAIN_CHUNK):
                self._loop.remove_reader(fd)  # every writer closed it
        except BlockingIOError:
            pass

    def __enter__(self) -> _PipeDrain:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for fd in self._fds:
            self._loop.remove_reader(fd)
            os.close(fd)
