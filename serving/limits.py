"""Limits that keep one slow, lying or greedy client from costing the others: settings and enforcement.

Every limit has an environment variable (what a ServingRuntime sets) and a command-line flag
(which wins); the defaults suit a pod behind Knative or a Service:

- header timeout: a client has this long from its first byte (or from connecting) to finish
  the request line and headers, else it gets 408 and is closed (slowloris);
- body timeout: then this long to send the whole body (a Content-Length larger than the body, a
  chunked body that never ends), else 408 and closed;
- idle timeout: a kept-alive connection with no request in flight is closed after this long;
- max concurrency: at most this many inference requests at once per process; beyond it, 503
  with Retry-After, which Knative's queue-proxy and HTTP clients retry on. Probes, metadata and
  /metrics are never refused, so a busy server stays ready and live;
- max body bytes: larger inference bodies get 413;
- drain delay and grace: on SIGTERM readiness answers 503 at once while requests are still
  served (``drain_delay_s``, so endpoints can drop the pod first), then the listener closes and
  in-flight requests get until ``grace_s`` after the signal to finish. Keep ``grace_s`` below
  the pod's terminationGracePeriodSeconds (30 s in the manifests), or the kubelet kills first.

The timeouts live in ``GuardedHttpProtocol`` (uvicorn's httptools protocol with two deadlines),
the admission and draining answers in ``Admission`` (ASGI, in front of the app), the drain
sequence in ``DrainingServer`` (uvicorn's server, started on the first stop signal).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import math
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.metrics import REFUSED

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024  # about 100k rows of 10 features as JSON
RETRY_AFTER_S = "1"
JSON = b"application/json"


class LimitsConfigError(ValueError):
    """A limit has a value outside what it accepts."""


@dataclass(frozen=True)
class Limit:
    env: str
    flag: str
    convert: type
    low: float
    help: str


# name -> how it is set; one home for the env names, flags, bounds and help texts.
LIMITS = {
    "header_timeout_s": Limit("SERVING_HEADER_TIMEOUT_S", "--header_timeout_s", float, 0.1,
                              "seconds to receive a request's line and headers"),
    "body_timeout_s": Limit("SERVING_BODY_TIMEOUT_S", "--body_timeout_s", float, 0.1,
                            "seconds to receive a request's body once its headers are in"),
    "idle_timeout_s": Limit("SERVING_IDLE_TIMEOUT_S", "--idle_timeout_s", float, 0.1,
                            "seconds a kept-alive connection may stay idle"),
    "max_concurrency": Limit("SERVING_MAX_CONCURRENCY", "--max_concurrency", int, 1,
                             "inference requests at once per process; beyond, 503 with Retry-After"),
    "max_body_bytes": Limit("SERVING_MAX_BODY_BYTES", "--max_body_bytes", int, 1,
                            "larger inference bodies get HTTP 413"),
    "drain_delay_s": Limit("SERVING_DRAIN_DELAY_S", "--drain_delay_s", float, 0,
                           "after SIGTERM, seconds of serving with readiness 503 before the listener closes"),
    "grace_s": Limit("SERVING_GRACE_S", "--grace_s", float, 0,
                     "after SIGTERM, seconds until in-flight requests are cut; below terminationGracePeriodSeconds"),
}


@dataclass(frozen=True)
class Limits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0  # 8 MiB at 300 kB/s; a pod's clients are on the cluster network
    idle_timeout_s: float = 5.0  # kserve's and uvicorn's keep-alive default
    max_concurrency: int = 64  # 64 bodies of 8 MiB in memory at most, with their decoded rows
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    drain_delay_s: float = 3.0  # endpoints usually drop a terminating pod within 1-2 s
    grace_s: float = 20.0  # the manifests' terminationGracePeriodSeconds is 30

    def __post_init__(self) -> None:
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            wrong_type = isinstance(value, bool) or not isinstance(value, (int, float)) or \
                (limit.convert is int and not isinstance(value, int))
            if wrong_type or not math.isfinite(value) or value < limit.low:
                raise LimitsConfigError(f"{name}={value!r} is invalid: expected {_expected(limit)}")
        if self.drain_delay_s > self.grace_s:
            raise LimitsConfigError(
                f"drain_delay_s={self.drain_delay_s} is longer than grace_s={self.grace_s}: "
                "the delay is part of the grace period"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Limits:
        # Set means set: an empty value is refused like any other that is not a number.
        """The limits the environment sets; the defaults for the others.

        Args:
            environ: the environment to read.

        Returns:
            The Limits; LimitsConfigError names a bad (or empty) variable.
        """
        values = {name: _parse(limit.env, environ[limit.env], limit) for name, limit in LIMITS.items() if limit.env in environ}
        return cls(**values)

    def drain_delay_for(self, sig: int) -> float:
        """Ctrl-C (SIGINT) is someone at a terminal, with no endpoints to update: no delay.

        Args:
            sig: the stop signal received.

        Returns:
            Seconds to keep serving with readiness 503.
        """
        return 0.0 if sig == signal.SIGINT else self.drain_delay_s

    def with_args(self, args: argparse.Namespace) -> Limits:
        """These limits with every flag given on the command line in place of its value.

        Args:
            args: the parsed command line (add_arguments' flags).

        Returns:
            The new Limits.
        """
        given = {f.name: getattr(args, f.name) for f in fields(self) if getattr(args, f.name, None) is not None}
        return Limits(**{**vars(self), **given})


def _expected(limit: Limit) -> str:
    kind = "an integer" if limit.convert is int else "a number of seconds"
    return f"{kind} >= {limit.low:g}"


def _parse(source: str, raw: str, limit: Limit) -> float:
    try:
        value = limit.convert(raw.strip())
    except ValueError:
        raise LimitsConfigError(f"{source}={raw!r} is invalid: expected {_expected(limit)}") from None
    if not math.isfinite(value) or value < limit.low:
        raise LimitsConfigError(f"{source}={raw!r} is invalid: expected {_expected(limit)}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per limit; unset flags keep the environment's value (or the default).

    Args:
        parser: the server's argument parser.
    """
    defaults = Limits()
    for name, limit in LIMITS.items():
        def parse(text: str, limit: Limit = limit) -> float:
            try:
                return _parse(limit.flag, text, limit)
            except LimitsConfigError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
        parser.add_argument(limit.flag, dest=name, type=parse, default=None,
                            help=f"{limit.help} (env {limit.env}; default {getattr(defaults, name)})")


# -- enforcement ---------------------------------------------------------------------------


class DrainState:
    """Set once, on the first stop signal; shared by the server, the protocol and Admission of one process."""

    def __init__(self) -> None:
        self.since: float | None = None  # time.monotonic() of the signal
        self.delay_s = 0.0  # how long to keep serving from ``since``

    @property
    def draining(self) -> bool:
        """Whether a stop signal has arrived.

        Returns:
            True from the first signal on.
        """
        return self.since is not None

    def begin(self, delay_s: float = 0.0) -> None:
        """Record the first stop signal; later calls change nothing.

        Args:
            delay_s: how long to keep serving from now, in seconds.
        """
        if self.since is None:
            self.since, self.delay_s = time.monotonic(), delay_s


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline for the headers and one for the body.

    uvicorn times only idle kept-alive connections; a client that sends its headers a byte a
    second, or declares more body than it sends, is otherwise held forever. When a deadline
    passes before the app has answered, the client gets 408 and the connection is closed; the
    app's pending read then sees a disconnect.
    """

    def __init__(self, *args: Any, limits: Limits, drain: DrainState, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.drain = drain

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """A new connection: arm the headers deadline at once (a client that never sends a byte is closed too).

        Args:
            transport: the connection's transport.
        """
        super().connection_made(transport)
        self._deadline: asyncio.TimerHandle | None = None
        self._arm(self.limits.header_timeout_s, "headers")  # a connection that never sends a byte

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self.limits.header_timeout_s, "headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._arm(self.limits.body_timeout_s, "body")
        if self.drain.draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answer, then "Connection: close": the client reconnects elsewhere

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection closed: cancel its deadline.

        Args:
            exc: the error that closed it, None for a clean close.
        """
        self._disarm()
        super().connection_lost(exc)

    def _arm(self, seconds: float, part: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expired, part, seconds)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self, part: str, seconds: float) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        REFUSED.labels(reason=f"{part}_timeout").inc()
        log.debug("client too slow, connection closed", extra={"part": part, "timeout_s": seconds,
                                                              "client": self.client})
        if self.cycle is None or not self.cycle.response_started:
            message = f'{{"error":"request {part} not received within {seconds:g} s; connection closed"}}'.encode()
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                 b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(message), message))
        if self.cycle is not None:
            self.cycle.disconnected = True  # the app's next read is a disconnect; its answer is dropped
            self.cycle.message_event.set()
        self.transport.close()


def protocol_for(limits: Limits, drain: DrainState) -> Callable[..., GuardedHttpProtocol]:
    """uvicorn's ``http`` setting: it makes one protocol per connection; a partial pickles into --workers.

    Args:
        limits: the limits.
        drain: the process's drain state.

    Returns:
        The protocol factory.
    """
    return functools.partial(GuardedHttpProtocol, limits=limits, drain=drain)


class Admission:
    """ASGI in front of the app: at most ``max_concurrency`` inference requests; readiness 503 while draining.

    Only POSTs (inference) count and are refused: health, readiness, metadata and /metrics
    always get through, so a saturated server stays live and ready.
    """

    READY_PATH = "/v2/health/ready"

    def __init__(self, app: Any, max_concurrency: int, drain: DrainState) -> None:
        self.app = app
        self.max_concurrency = max_concurrency
        self.drain = drain
        self.in_flight = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET" and self.drain.draining and (
                scope["path"] == self.READY_PATH or scope["path"].endswith("/ready")):
            await _answer(send, 503, b'{"error":"Server is not ready: shutting down"}')
            return
        if scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_concurrency:
            REFUSED.labels(reason="concurrency").inc()
            await _answer(send, 503, b'{"error":"server busy: %d requests in progress, the limit '
                          b'(SERVING_MAX_CONCURRENCY); retry after %s s"}' % (self.in_flight, RETRY_AFTER_S.encode()),
                          [(b"retry-after", RETRY_AFTER_S.encode())])
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _answer(send: Any, status: int, body: bytes, headers: list | None = None) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", JSON), (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


class DrainingServer(uvicorn.Server):
    """uvicorn's server whose first stop signal drains: readiness 503 and Connection: close for
    ``drain_delay_s`` while still serving, then uvicorn's graceful shutdown until ``grace_s``
    after the signal. A second Ctrl-C still forces the exit, as in uvicorn.
    """

    def __init__(self, config: uvicorn.Config, limits: Limits, drain: DrainState) -> None:
        super().__init__(config)
        self.limits = limits
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first SIGTERM/SIGINT starts the drain (serve on for the drain delay).

        A second signal is uvicorn's own handling: Ctrl-C twice forces the exit.

        Args:
            sig: the signal number.
            frame: the interrupted frame (unused).
        """
        if self.drain.draining:
            super().handle_exit(sig, frame)  # the second signal: uvicorn's (Ctrl-C twice forces)
            return
        self._captured_signals.append(sig)
        self.drain.begin(self.limits.drain_delay_for(sig))
        log.info("draining", extra={"signal": signal.Signals(sig).name, "drain_delay_s": self.drain.delay_s,
                                    "grace_s": self.limits.grace_s})

    async def on_tick(self, counter: int) -> bool:
        """uvicorn's periodic tick: exit once the drain delay has passed.

        Args:
            counter: uvicorn's tick counter.

        Returns:
            True when uvicorn should stop serving.
        """
        if self.drain.draining and time.monotonic() - self.drain.since >= self.drain.delay_s:
            self.should_exit = True
        return await super().on_tick(counter)

    async def shutdown(self, sockets: Any = None) -> None:
        """uvicorn's shutdown, with the grace period counted from the signal (the drain delay is part of it).

        Args:
            sockets: uvicorn's listening sockets.
        """
        # uvicorn waits timeout_graceful_shutdown from here; the grace period counts from the signal.
        spent = time.monotonic() - self.drain.since if self.drain.draining else 0.0
        self.config.timeout_graceful_shutdown = max(0.1, self.limits.grace_s - spent)
        await super().shutdown(sockets)
