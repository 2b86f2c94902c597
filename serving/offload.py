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
import io
import logging
import multiprocessing
import os
import pickle
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from kserve.errors import ModelNotReady

from serving.inference_log import InferenceLog
from serving.model import SklearnModel
from serving.settings import DEFAULT_OFFLOAD_BYTES, DEFAULT_OFFLOAD_PROCESSES

log = logging.getLogger(__name__)

PARENT_CHECK_S = 0.5

_model: SklearnModel | None = None  # in a pool process: its copy of the model

# What a pool process hands back to the inference log: None (not sampled, or failed before an answer),
# (version, rows, outputs), or the row count of a sampled request the buffer had no room for.
Taken = tuple[str | None, np.ndarray, dict[str, np.ndarray]] | int | None


class _Capture:
    """The inference log's stand-in in a pool process: keeps the one request it computes (one at a time)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.taken: Taken = None

    def record(self, model: str, version: str | None, x: np.ndarray, outputs: dict[str, np.ndarray]) -> None:
        """What SklearnModel hands the log.

        Args:
            model: the model's name (the serving process knows it).
            version: the version that answered.
            x: the decoded rows.
            outputs: the computed outputs.

        Returns:
            None; ``taken`` holds the request, or only its row count when it exceeds ``room``.
        """
        self.taken = (version, x, outputs) if len(x) <= self.room else len(x)


class _LogDropper(pickle.Pickler):
    """Pickles the model for its pool without the inference log: the pool captures, the serving process logs."""

    def reducer_override(self, obj: Any) -> Any:
        """None in the log's place (its settings may hold test doubles that do not pickle, and it is never used).

        Args:
            obj: each object pickled.

        Returns:
            A reduction to None for an InferenceLog, else NotImplemented (pickled as usual).
        """
        return (type(None), ()) if isinstance(obj, InferenceLog) else NotImplemented


def _without_log(model: SklearnModel) -> bytes:
    buffer = io.BytesIO()
    _LogDropper(buffer).dump(model)
    return buffer.getvalue()


def _start(model_state: bytes) -> None:
    global _model
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the server stops us
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    _model = pickle.loads(model_state)
    _model.inference_log = None  # set per request to a _Capture when the serving process sampled it


def _exit_with_parent(parent: int) -> None:
    """A serving process killed with -9 cannot stop its pool, and the pool's queue never closes
    (each process holds both of its ends): without this, the pool process would live on, orphaned."""
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)


def _started() -> bool:
    return _model is not None


def _captured(room: int | None, infer, *args):
    """``infer(*args)`` in the pool process, with the request captured for the log when ``room`` is not None."""
    capture = _Capture(room) if room is not None else None
    _model.inference_log = capture
    try:
        return asyncio.run(infer(*args)), capture.taken if capture else None
    finally:
        _model.inference_log = None


def _infer_json(body: bytes, header_length: str | None, room: int | None) -> tuple[tuple[bytes, int | None], Taken]:
    return _captured(room, _model.infer_json, body, header_length)


def _infer_v1(body: bytes, room: int | None) -> tuple[bytes, Taken]:
    return _captured(room, _model.infer_v1, body)


def _sample(model: SklearnModel) -> int | None:
    """The log's draw for a request about to be offloaded: None (not logged) or the buffer's room in rows."""
    return model.inference_log.sample() if model.inference_log is not None else None


def _keep(model: SklearnModel, taken: Taken) -> None:
    """Hand what the pool captured to the serving process's log (on the event loop: an append, a count)."""
    if taken is None or model.inference_log is None:
        return
    if isinstance(taken, int):
        model.inference_log.dropped(taken)
    else:
        version, x, outputs = taken
        model.inference_log.keep(model.name, version, x, outputs)


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
        # A pool is built and listed under this lock, and none is built after shutdown: a worker
        # stopped while its pool starts ran its exit finalizers before the start thread finished,
        # and the pool's queues then left five semaphores to the resource tracker.
        self._lock = threading.Lock()
        self._closed = False

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
        """``model.infer_json`` in the pool, logged as it would be on the loop.

        Args:
            model: the model the request names (its pool is started on first use).
            body: the V2 request body.
            header_length: the request's Inference-Header-Content-Length, or None.

        Returns:
            The response body and, for binary outputs, its JSON header's length.
        """
        _require_ready(model)
        answer, taken = await self._run(model, _infer_json, body, header_length, _sample(model))
        _keep(model, taken)
        return answer

    async def infer_v1(self, model: SklearnModel, body: bytes) -> bytes:
        """``model.infer_v1`` in the pool, logged as it would be on the loop.

        Args:
            model: the model the request names.
            body: the V1 ``:predict`` request body.

        Returns:
            The response body.
        """
        _require_ready(model)
        answer, taken = await self._run(model, _infer_v1, body, _sample(model))
        _keep(model, taken)
        return answer

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
        state = _without_log(model)
        with self._lock:
            if self._closed:
                raise RuntimeError("the offload pool is shut down")
            pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_start, initargs=(state,))
            self._executors.append(pool)
        pool.submit(_started).result()  # after a shutdown meanwhile: RuntimeError or BrokenProcessPool
        log.info("offload pool started", extra={"model": model.name, "processes": self.processes,
                                                "min_bytes": self.min_bytes})
        return pool

    def shutdown(self) -> None:
        """Stop the pools at once; called when the server has answered its last request (or given up on it).

        The pool processes hold no state, and waiting for one still importing (seconds) or still
        computing an abandoned request would outlast the grace period: they are terminated.
        """
        self._starter.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._closed = True
        for pool in self._executors:
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)  # joins its queues: no semaphore left to the resource tracker
        self._executors.clear()
        self._pools.clear()
