"""Prometheus series for inference, shared by the REST route and the gRPC servicer.

One series per (model, protocol, status): ``status`` is the HTTP code for REST and the gRPC
status name (OK, INVALID_ARGUMENT, ...) for gRPC, so one dashboard covers both protocols.
"""

from __future__ import annotations

import collections
import weakref
from collections.abc import Iterator

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

UNKNOWN_MODEL = "_unknown"  # label for unknown models: client-chosen names would explode cardinality
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUESTS = Counter("serving_infer_requests", "V2 inference requests", ["model", "protocol", "status"])
LATENCY = Histogram(
    "serving_infer_request_duration_seconds", "V2 inference latency, request read to response built",
    ["model", "protocol", "status"], buckets=LATENCY_BUCKETS,
)
# Requests turned away before the app saw them: too many at once, or a client too slow (serving.limits).
REFUSED = Counter("serving_refused_requests", "HTTP requests refused or dropped by a limit", ["reason"])


class InferMetrics:
    """Labelled children cached per label set: .labels() costs more than the increment."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self._children: dict[tuple[str, str], tuple] = {}

    def observe(self, model: str, status: int | str, seconds: float) -> None:
        """Count one inference request and its latency.

        Args:
            model: the model's name (or the unknown-model label).
            status: the HTTP status, or the gRPC status name.
            seconds: from request read to response built.
        """
        key = (model, str(status))
        children = self._children.get(key)
        if children is None:
            labels = (model, self.protocol, key[1])
            children = self._children[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)


# The inference log (serving.inference_log): sampled = written + dropped + buffered, per process.
class InferenceLogMetrics:
    """One inference log's counts, plain numbers its owner updates under its own lock.

    prometheus_client's counters take a lock and cost about a microsecond each, twice per
    request on the event loop; these cost an integer addition. ``_InferenceLogCollector`` sums
    the live logs of this process when /metrics is scraped.
    """

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()  # sampled, written, dropped_<reason>
        self.buffered = 0  # rows waiting for, or in, a write
        self.last_flush = 0.0  # Unix time of the last successful write
        _LIVE_LOGS.add(self)


_LIVE_LOGS: weakref.WeakSet[InferenceLogMetrics] = weakref.WeakSet()
_LOG_DROP_REASONS = ("buffer_full", "store_error", "shutdown")


class _InferenceLogCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        logs = list(_LIVE_LOGS)
        if not logs:  # logging off: no series at all
            return
        total = collections.Counter()
        for metrics in logs:
            total.update(metrics.counts)
        yield CounterMetricFamily("serving_inference_log_sampled_rows", "rows picked by the inference log's sampling",
                                  value=total["sampled"])
        yield CounterMetricFamily("serving_inference_log_written_rows",
                                  "rows written to the object store by the inference log", value=total["written"])
        dropped = CounterMetricFamily("serving_inference_log_dropped_rows", "sampled rows not written: buffer_full "
                                      "(store slow or down, or one request larger than the room left), store_error, shutdown", labels=["reason"])
        for reason in _LOG_DROP_REASONS:
            dropped.add_metric([reason], total[f"dropped_{reason}"])
        yield dropped
        yield GaugeMetricFamily("serving_inference_log_buffered_rows",
                                "rows waiting for, or in, a write to the object store",
                                value=sum(metrics.buffered for metrics in logs))
        yield GaugeMetricFamily("serving_inference_log_last_flush_timestamp_seconds",
                                "Unix time of the inference log's last successful write (0: none yet)",
                                value=max((metrics.last_flush for metrics in logs), default=0.0))


REGISTRY.register(_InferenceLogCollector())
