"""Unary gRPC calls served from grpcio's core completion queue by one thread, ModelInfer answered in batches.

Why not grpcio's public server: measured on one core (h2load, 16 streams, 1-row ModelInfer,
2026-12-04), its threaded server spends about 100 µs of CPU per call in its own Python: a
thread-pool hand-off and three GIL hand-offs between its polling thread and a worker. With our
ModelInfer it reached about half of REST's req/s, and no knob moved that by more than 15 %
(1 to 16 workers, a lighter executor, registered methods, the GIL switch interval); grpcio's
asyncio server cost more still (see serving.grpc_service). Polling the completion queue from one
thread costs about 30 µs per call, and that thread sees every request that arrived while it
computed the last ones, so they share one model call, as REST's requests share the batcher's.

Private API: ``grpc._cython.cygrpc`` is the Cython layer grpcio's own server is written on; it
has no stability promise. It is used here only, ``available()`` checks every name this module
takes from it, and serving.server falls back to grpcio's public threaded server (same servicer,
same answers) when one is missing or SERVING_GRPC_CORE=0. grpcio is pinned in constraints.txt;
tests/serving/test_grpc_service.py runs the service on both servers.

A call, all on the polling thread unless said:
1. A new call: its message is asked for (and the next call).
2. Its message arrives: kept for the batch when it is the batched method, else answered on the
   thread pool (``answer`` may wait for the event loop).
3. When the queue holds no more finished events, the kept messages are answered together
   (``answer_together``); those it declines (None) go to the thread pool.
4. The answer leaves in one batch: initial metadata, message, status; the batch ends when the
   client has closed too, and the call is done.
Stop, as grpcio's: no new calls; those in flight finish within the grace, then are cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from grpc import StatusCode

try:
    from grpc._cython import cygrpc
except ImportError:  # a grpcio without it: the public server serves
    cygrpc = None

log = logging.getLogger(__name__)

REQUIRED = ("CompletionQueue", "Server", "CompletionType", "ReceiveMessageOperation", "SendInitialMetadataOperation",
            "SendMessageOperation", "SendStatusFromServerOperation", "ReceiveCloseOnServerOperation")
POLL_S = 1.0  # the longest the polling thread blocks in one poll
# Tags: what a finished event was for.
_NEW_CALL, _SHUTDOWN = "new-call", "shutdown"
_SENT = "sent"  # the answer's batch: the call is done


def available() -> bool:
    """Whether this grpcio has every core name this module uses.

    Returns:
        True when CoreServer can run; False means grpcio's public server must serve.
    """
    return cygrpc is not None and all(hasattr(cygrpc, name) for name in REQUIRED)


@dataclass(frozen=True)
class Answer:
    """What a call gets: a serialized response (OK), or a status and its details without one."""

    response: bytes | None
    code: StatusCode = StatusCode.OK
    details: str = ""


@dataclass(eq=False)
class _Received:
    """A message waiting for its answer (tag of the receive batch, then kept for the batch)."""

    call: Any  # cygrpc.Call
    method: str
    payload: bytes | None = None
    started: float = 0.0


class CoreServer:
    """grpc.Server's start, add_insecure_port and stop, for unary methods of one service.

    Args:
        service: the service's full name ("inference.GRPCInferenceService").
        methods: its method names; others are answered UNIMPLEMENTED.
        answer: (method, request bytes) -> Answer; runs on the pool's threads.
        batched: the method whose requests are answered together on the polling thread.
        answer_together: (request bytes, perf_counter at arrival) -> per request its Answer, or None
            for one to answer with ``answer`` on the pool instead.
        pool: the threads for ``answer``.
        options: channel arguments (max message lengths); None values are left out.
    """

    def __init__(self, service: str, methods: Collection[str], answer: Callable[[str, bytes], Answer],
                 batched: str, answer_together: Callable[[list[bytes], list[float]], list[Answer | None]],
                 pool: Executor, options: Sequence[tuple[str, Any]] = ()) -> None:
        self._prefix = f"/{service}/"
        self._methods = frozenset(methods)
        self._answer = answer
        self._batched = batched
        self._answer_together = answer_together
        self._pool = pool
        self._cq = cygrpc.CompletionQueue()
        self._server = cygrpc.Server(tuple((key, value) for key, value in options if value is not None), False)
        self._server.register_completion_queue(self._cq)
        self._timeout = cygrpc.CompletionType.queue_timeout
        self._lock = threading.Lock()  # start, stop, asking for calls, counting them
        self._started = self._stopping = False
        self._stopped = threading.Event()
        self._in_flight = 0  # calls accepted and not done

    def add_insecure_port(self, address: str) -> int:
        """Listen on ``address``, as grpc.Server does; RuntimeError when it cannot bind.

        Args:
            address: "host:port" ("[::]:8081", "127.0.0.1:0").

        Returns:
            The port bound (the one chosen when ``address`` asked for port 0).
        """
        port = self._server.add_http2_port(address.encode())
        if port == 0:
            raise RuntimeError(f"Failed to bind to address {address}; set GRPC_VERBOSITY=debug env to see detailed "
                               "error")
        return port

    def start(self) -> None:
        """Start serving on the ports added, from a new polling thread."""
        with self._lock:
            if self._started:
                raise ValueError("Cannot start already-started server!")
            self._started = True
            self._server.start()
            self._server.request_call(self._cq, self._cq, _NEW_CALL)
            threading.Thread(target=self._serve, name="grpc-core", daemon=True).start()

    def stop(self, grace: float | None) -> threading.Event:
        """No new calls; those in flight get ``grace`` seconds before they are cancelled.

        Args:
            grace: seconds for the calls in flight; None cancels them at once.

        Returns:
            An event set once every call is done and the server is gone.
        """
        with self._lock:
            if not self._started or self._stopping:
                if not self._started:
                    self._stopped.set()
                return self._stopped
            self._stopping = True
            self._server.shutdown(self._cq, _SHUTDOWN)
        if grace is None:
            self._cancel_all()
        else:
            threading.Thread(target=lambda: self._stopped.wait(grace) or self._cancel_all(), daemon=True).start()
        return self._stopped

    def _cancel_all(self) -> None:
        with self._lock:
            if not self._stopped.is_set():
                self._server.cancel_all_calls()

    # -- the polling thread ------------------------------------------------------------------

    def _serve(self) -> None:
        shut_down = False
        while not (shut_down and self._in_flight == 0):
            event = self._cq.poll(time.time() + POLL_S)
            kept: list[_Received] = []
            while event.completion_type != self._timeout:  # every event already finished, before computing
                try:
                    shut_down = self._on_event(event, kept) or shut_down
                except Exception:  # a bug: this thread must go on serving the other calls
                    log.exception("gRPC event not handled")
                event = self._cq.poll(0)  # a deadline passed: returns at once
            if kept:
                self._answer_kept(kept)
        with self._lock:
            self._server.destroy()
            self._stopped.set()

    def _on_event(self, event: Any, kept: list[_Received]) -> bool:
        """Handle one finished event; True when it is the end of the shutdown."""
        tag = event.tag
        if tag is _SENT:
            self._count(-1)
        elif tag is _NEW_CALL:
            with self._lock:
                if event.success:
                    self._in_flight += 1
                if not self._stopping:  # after a shutdown, no more calls are asked for
                    self._server.request_call(self._cq, self._cq, _NEW_CALL)
            if event.success:
                self._on_new_call(event.call, event.call_details.method.decode())
        elif tag is _SHUTDOWN:
            return True
        else:  # a message received
            tag.payload = event.batch_operations[0].message() if event.success else None
            if tag.payload is None:
                # grpcio's words for a unary call that sent no message (or was cancelled before it did)
                self._send(tag.call, Answer(None, StatusCode.UNIMPLEMENTED,
                                            f'"{tag.method}" requires exactly one request message.'))
            elif tag.method == self._batched:
                tag.started = time.perf_counter()
                kept.append(tag)
            else:
                self._to_pool(tag)
        return False

    def _on_new_call(self, call: Any, path: str) -> None:
        method = path[len(self._prefix):] if path.startswith(self._prefix) else ""
        if method not in self._methods:
            self._send(call, Answer(None, StatusCode.UNIMPLEMENTED, "Method not found!"))
            return
        try:
            call.start_server_batch((cygrpc.ReceiveMessageOperation(0),), _Received(call, method))
        except Exception:  # core refused the batch: no event will say this call is done
            log.exception("gRPC message not asked for")
            self._count(-1)

    def _answer_kept(self, kept: list[_Received]) -> None:
        try:
            answers = self._answer_together([received.payload for received in kept],
                                            [received.started for received in kept])
        except Exception:  # a bug: every call still gets a status
            log.exception("gRPC batch failed", extra={"grpc_method": self._batched})
            answers = [Answer(None, StatusCode.INTERNAL, "internal error; see server log")] * len(kept)
        for received, answer in zip(kept, answers):
            if answer is None:
                self._to_pool(received)
            else:
                self._send(received.call, answer)

    def _to_pool(self, received: _Received) -> None:
        try:
            self._pool.submit(self._answer_on_pool, received)
        except RuntimeError:  # the pool is shut down: the process is exiting
            self._send(received.call, Answer(None, StatusCode.UNAVAILABLE, "server is stopping"))

    # -- any thread --------------------------------------------------------------------------

    def _answer_on_pool(self, received: _Received) -> None:
        try:
            answer = self._answer(received.method, received.payload)
        except Exception:  # a bug: the call still gets a status
            log.exception("gRPC method failed", extra={"grpc_method": received.method})
            answer = Answer(None, StatusCode.INTERNAL, "internal error; see server log")
        self._send(received.call, answer)

    def _count(self, change: int) -> None:
        with self._lock:
            self._in_flight += change

    def _send(self, call: Any, answer: Answer) -> None:
        operations = [cygrpc.SendInitialMetadataOperation(None, 0)]
        if answer.response is not None:
            operations.append(cygrpc.SendMessageOperation(answer.response, 0))
        operations += (cygrpc.SendStatusFromServerOperation(None, answer.code.value[0], answer.details.encode(), 0),
                       cygrpc.ReceiveCloseOnServerOperation(0))
        try:
            call.start_server_batch(operations, _SENT)
        except Exception:  # core refused the batch: no event will say this call is done
            log.exception("gRPC answer not sent")
            self._count(-1)
