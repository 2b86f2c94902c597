"""Large inference requests are decoded and predicted in a helper process, off the event loop.

A maximum-size body (8 MiB of tiny rows, ~380k rows) costs seconds of pure-Python JSON parsing
and prediction, all holding the GIL, so a thread would not help: on the event loop it stalled
every probe and every other request for that long (issue 10: /v2/health/live took 3.5 s). Bodies
of at least SERVING_OFFLOAD_BYTES go to a small process pool that holds its own copy of the
model and answers with the finished response body; everything smaller stays on the loop, where
a hand-off would cost more than the work.

Each serving process starts its pool in the background as it starts serving (a thread spawns it;
the event loop never waits), the pool's processes ignore Ctrl-C (the server stops them), and the
pool is shut down once the server has answered its last request.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from kserve.errors import ModelNotReady

from serving.model import SklearnModel
from serving.settings import DEFAULT_OFFLOAD_BYTES, DEFAULT_OFFLOAD_PROCESSES

log = logging.getLogger(__name__)

PARENT_CHECK_S = 0.5

_model: SklearnModel | None = None  # in a pool process: its copy of the model


def _start(model_state: bytes) -> None:
    global _model
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server stops us
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _model = pickle.loads(model_state)
    _model.inference_log = None  # the serving process logs (and counts as skipped) what it offloads


def _exit_with_parent(parent: int) -> None:
    """A serving process killed with -9 cannot stop its pool, and the pool's queue never closes
    (each process holds both of its ends): without this, the pool process would live on, orphaned."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _started() -> bool:
    return _model is not None


def _infer_json(body: bytes, header_length: str | None) -> tuple[bytes, int | None]:
    return asyncio.run(_model.infer_json(body, header_length))


def _infer_v1(body: bytes) -> bytes:
    return asyncio.run(_model.infer_v1(body))


def _require_ready(model: SklearnModel) -> None:
    """Not ready: the same 503 as on the loop, without starting a pool."""
    if not model.ready:
        raise ModelNotReady(model.name, model.load_error)


class Offloader:
    """Sends ``SklearnModel.infer_json``/``infer_v1`` of large bodies to a process pool (one per serving process)."""

    def __init__(self, min_bytes: int = DEFAULT_OFFLOAD_BYTES, processes: int = DEFAULT_OFFLOAD_PROCESSES) -> None:
        self.min_bytes = min_bytes
        self.processes = processes
        # Pools start in this thread, never on the event loop: spawning writes the pickled model into
        # a pipe that the new process reads only after its imports, seconds on a busy machine.
        self._starter = ThreadPoolExecutor(1, thread_name_prefix="offload-start")
        self._pools: dict[int, Future[ProcessPoolExecutor]] = {}  # id(model) -> its pool, once started
        self._executors: list[ProcessPoolExecutor] = []  # started or starting, for shutdown

    def wants(self, body: bytes) -> bool:
        """Whether a body is large enough to decode in the helper process.

        Args:
            body: the request body.

        Returns:
            True when offloading is on and the body has at least min_bytes.
        """
        return 0 < self.min_bytes <= len(body)

    def warm(self, model: SklearnModel) -> None:
        """Start ``model``'s pool in the background, so the first large request does not wait for it.

        Args:
            model: the served model.
        """
        if model.ready:
            self._pool(model)

    async def infer_json(self, model: SklearnModel, body: bytes, header_length: str | None) -> tuple[bytes, int | None]:
        """``SklearnModel.infer_json`` in the model's helper process.

        Args:
            model: the served model.
            body: the request body.
            header_length: the Inference-Header-Content-Length header, None without one.

        Returns:
            (response body, JSON header length or None); raises as SklearnModel.infer_json.
        """
        _require_ready(model)
        return await self._run(model, _infer_json, body, header_length)

    async def infer_v1(self, model: SklearnModel, body: bytes) -> bytes:
        """``SklearnModel.infer_v1`` in the model's helper process.

        Args:
            model: the served model.
            body: the request body.

        Returns:
            The response body; raises as SklearnModel.infer_v1.
        """
        _require_ready(model)
        return await self._run(model, _infer_v1, body)

    def _pool(self, model: SklearnModel) -> Future[ProcessPoolExecutor]:
        starting = self._pools.get(id(model))
        if starting is None:
            starting = self._pools[id(model)] = self._starter.submit(self._start_pool, model)
        return starting

    async def _run(self, model: SklearnModel, function, *args):
        starting = self._pool(model)
        try:
            pool = await asyncio.wrap_future(starting)
            return await asyncio.wrap_future(pool.submit(function, *args))
        except BrokenProcessPool:
            # A pool process died (OOM kill, say): the next large request gets a fresh pool.
            if self._pools.get(id(model)) is starting:
                del self._pools[id(model)]
            raise

    def _start_pool(self, model: SklearnModel) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start, initargs=(pickle.dumps(model),))
        self._executors.append(pool)
        pool.submit(_started).result()
        log.info("offload pool started", extra={"model": model.name, "processes": self.processes,
                                                "min_bytes": self.min_bytes})
        return pool

    def shutdown(self) -> None:
        """Stop the pools at once; called when the server has answered its last request (or given up on it).

        The pool processes hold no state, and waiting for one still importing (seconds) or still
        computing an abandoned request would outlast the grace period: they are terminated.
        """
        self._starter.shutdown(wait=False, cancel_futures=True)
        for pool in self._executors:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)  # joins its queues: no semaphore left to the resource tracker
        self._executors.clear()
        self._pools.clear()
