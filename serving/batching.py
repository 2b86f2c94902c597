"""Adaptive batching: concurrent requests share one model call.

A tree ensemble costs about the same for 1 row as for 30 (per-call overhead dominates), so when
requests overlap, answering them with one call multiplies throughput. Each request awaits
``AdaptiveBatcher.predict(x)``; rows queue up and one flush runs the model on all of them.

When is the flush?
- Alone (the last flush served a single request): on the next event-loop turn, so a lone client
  never waits for companions (c=1 pays no window).
- Under concurrency (the last flush served several requests): as soon as that many requests are
  queued again, or ``max_batch_rows`` rows are, else ``max_latency_ms`` after the first arrived,
  which lets requests still being decoded join.
The model runs on the event loop's thread, between turns: the CPU is busy either way, and a
thread hand-off would cost more than the small batches it could overlap.

Isolation: a request's array is checked on its own before it joins a batch; requests are batched
only with the same feature count and dtype (so the arithmetic is the one they would get alone);
a request is never split; if a batched call raises, each request is retried alone, so only the
bad one fails. Batching assumes the model answers each row independently of the others, as
scikit-learn's estimators do.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

PredictFn = Callable[[np.ndarray], np.ndarray]

DEFAULT_MAX_BATCH_ROWS = 512
DEFAULT_MAX_LATENCY_MS = 1.0


class BatchingConfigError(ValueError):
    """A batching setting has a value outside what it accepts."""


@dataclass(frozen=True)
class BatchingConfig:
    enabled: bool = True
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS
    max_latency_ms: float = DEFAULT_MAX_LATENCY_MS

    def __post_init__(self) -> None:
        if isinstance(self.max_batch_rows, bool) or not isinstance(self.max_batch_rows, int) \
                or self.max_batch_rows < 1:
            raise BatchingConfigError(f"max_batch_rows={self.max_batch_rows!r} is invalid: expected an integer >= 1")
        if not (isinstance(self.max_latency_ms, (int, float)) and 0 <= self.max_latency_ms <= 1000):
            raise BatchingConfigError(
                f"max_latency_ms={self.max_latency_ms!r} is invalid: expected a number of milliseconds in [0, 1000]"
            )


@dataclass
class BatchStats:
    """Counters for logs and metrics: batches / requests shows how much batching happens."""

    requests: int = 0
    rows: int = 0
    batches: int = 0  # model calls, batched or not
    largest_batch_rows: int = 0
    retried_alone: int = 0  # requests answered one by one after their batch raised


@dataclass
class _Pending:
    x: np.ndarray
    future: asyncio.Future
    key: tuple = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.x.shape[1], self.x.dtype)


def _checked(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"x has shape {x.shape}: expected a 2-D array (rows, features) with at least one row")
    return x


class AdaptiveBatcher:
    """Queues concurrent ``predict`` calls into shared model calls (see the module docstring)."""

    def __init__(self, predict: PredictFn, config: BatchingConfig | None = None) -> None:
        self._predict = predict
        self.config = config or BatchingConfig()
        self.stats = BatchStats()
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._timer: asyncio.Handle | None = None
        self._flush_now_scheduled = False
        self._last_batch_requests = 1  # how many requests the last flush served

    async def predict(self, x: np.ndarray) -> np.ndarray:
        """The model's output rows for the rows of ``x`` (a 2-D array with at least one row)."""
        x = _checked(x)
        self.stats.requests += 1
        self.stats.rows += x.shape[0]
        if not self.config.enabled:
            self.stats.batches += 1
            return self._predict(x)
        loop = asyncio.get_running_loop()
        pending = _Pending(x, loop.create_future())
        self._queue.append(pending)
        self._queued_rows += x.shape[0]
        self._schedule(loop)
        return await pending.future

    def predict_together(self, xs: list[np.ndarray]) -> list[np.ndarray | Exception]:
        """Requests that arrived together, answered now on the calling thread in shared model calls.

        For gRPC's core loop (serving.grpc_core), which collects the requests its completion queue
        holds: the same isolation as ``predict`` (each array checked alone, batched only with the
        same feature count and dtype, at most max_batch_rows rows per call, each retried alone if
        the shared call raises); with batching off, one call per request.

        Args:
            xs: each request's rows (2-D arrays).

        Returns:
            Per request, in order: its output rows, or the exception that refused or failed it.
        """
        results: list[np.ndarray | Exception] = [None] * len(xs)  # type: ignore[list-item]
        groups: dict[tuple, list[tuple[int, np.ndarray]]] = {}
        for i, x in enumerate(xs):
            try:
                x = _checked(x)
            except ValueError as exc:
                results[i] = exc
                continue
            self.stats.requests += 1
            self.stats.rows += x.shape[0]
            groups.setdefault((x.shape[1], x.dtype), []).append((i, x))
        for group in groups.values():
            for chunk in self._chunks(group):
                for (i, _), result in zip(chunk, self._compute([x for _, x in chunk])):
                    results[i] = result
        return results

    def _chunks(self, group: list[tuple[int, np.ndarray]]) -> list[list[tuple[int, np.ndarray]]]:
        """Consecutive requests up to max_batch_rows rows per call (a request is never split); one each when off."""
        chunks: list[list[tuple[int, np.ndarray]]] = []
        rows = 0
        for item in group:
            size = item[1].shape[0]
            if not chunks or not self.config.enabled or rows + size > self.config.max_batch_rows:
                chunks.append([])
                rows = 0
            chunks[-1].append(item)
            rows += size
        return chunks

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._flush_now_scheduled:
            return
        # As many requests as last time have arrived: the usual companions are all here.
        complete = len(self._queue) >= self._last_batch_requests
        full = self._queued_rows >= self.config.max_batch_rows
        if complete or full or self.config.max_latency_ms == 0:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._flush_now_scheduled = True
            loop.call_soon(self._flush)
        elif self._timer is None:
            self._timer = loop.call_later(self.config.max_latency_ms / 1000, self._flush)

    def _flush(self) -> None:
        self._timer = None
        self._flush_now_scheduled = False
        if not self._queue:
            return
        batch = self._take()
        self._last_batch_requests = len(batch)
        groups: dict[tuple, list[_Pending]] = {}
        for pending in batch:
            groups.setdefault(pending.key, []).append(pending)
        for group in groups.values():
            self._run(group)
        if self._queue:
            self._schedule(asyncio.get_running_loop())

    def _take(self) -> list[_Pending]:
        """Requests from the front of the queue up to max_batch_rows (always at least one)."""
        batch = [self._queue.popleft()]
        rows = batch[0].x.shape[0]
        while self._queue and rows + self._queue[0].x.shape[0] <= self.config.max_batch_rows:
            rows += self._queue[0].x.shape[0]
            batch.append(self._queue.popleft())
        self._queued_rows -= rows
        return batch

    def _run(self, group: list[_Pending]) -> None:
        live = [pending for pending in group if not pending.future.done()]  # callers may have gone away
        if not live:
            return
        for pending, result in zip(live, self._compute([pending.x for pending in live])):
            if isinstance(result, Exception):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    def _compute(self, xs: list[np.ndarray]) -> list[np.ndarray | Exception]:
        """One model call for checked arrays of one feature count and dtype; each alone if it raises."""
        if len(xs) == 1:
            return [self._alone(xs[0])]
        sizes = [x.shape[0] for x in xs]
        self._record_batch(sum(sizes))
        try:
            out = np.asarray(self._predict(np.concatenate(xs)))
            if out.ndim == 0 or out.shape[0] != sum(sizes):
                raise ValueError(f"model returned shape {out.shape} for {sum(sizes)} rows")
        except Exception:
            self.stats.retried_alone += len(xs)
            return [self._alone(x) for x in xs]
        return np.split(out, np.cumsum(sizes)[:-1])

    def _alone(self, x: np.ndarray) -> np.ndarray | Exception:
        self._record_batch(x.shape[0])
        try:
            return self._predict(x)
        except Exception as exc:
            return exc

    def _record_batch(self, rows: int) -> None:
        self.stats.batches += 1
        self.stats.largest_batch_rows = max(self.stats.largest_batch_rows, rows)
