"""Prometheus series for inference, shared by the REST route and the gRPC servicer.

One series per (model, protocol, status): ``status`` is the HTTP code for REST and the gRPC
status name (OK, INVALID_ARGUMENT, ...) for gRPC, so one dashboard covers both protocols.
"""

from __future__ import annotations

import collections

from prometheus_client import Counter, Gauge, Histogram

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
        key = (model, str(status))
        children = self._children.get(key)
        if children is None:
            labels = (model, self.protocol, key[1])
            children = self._children[key] = (REQUESTS.labels(*labels), LATENCY.labels(*labels))
        children[0].inc()
        children[1].observe(seconds)


# The inference log (serving.inference_log): sampled = written + dropped + still buffered, per process.
LOG_SAMPLED = Counter("serving_inference_log_sampled_rows", "rows picked by the inference log's sampling")
LOG_WRITTEN = Counter("serving_inference_log_written_rows", "rows written to the object store by the inference log")
LOG_DROPPED = Counter("serving_inference_log_dropped_rows",
                      "sampled rows not written: buffer_full (store slow or down), store_error, shutdown", ["reason"])
LOG_SKIPPED = Counter("serving_inference_log_skipped_requests",
                      "requests the inference log could not see (offloaded: decoded in the helper process)", ["reason"])
LOG_BUFFERED = Gauge("serving_inference_log_buffered_rows", "rows waiting for, or in, a write to the object store")
LOG_LAST_FLUSH = Gauge("serving_inference_log_last_flush_timestamp_seconds",
                       "Unix time of the inference log's last successful write")


class InferenceLogMetrics:
    """The inference log's series, and the same counts for this log alone (``counts``, what tests read).

    The writer thread and the event loop both update them; each update is thread-safe.
    """

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()

    def sampled(self, rows: int) -> None:
        LOG_SAMPLED.inc(rows)
        self.counts["sampled"] += rows

    def written(self, rows: int, at: float) -> None:
        LOG_WRITTEN.inc(rows)
        LOG_LAST_FLUSH.set(at)
        self.counts["written"] += rows

    def dropped(self, reason: str, rows: int) -> None:
        LOG_DROPPED.labels(reason).inc(rows)
        self.counts[f"dropped_{reason}"] += rows

    def skipped(self, reason: str) -> None:
        LOG_SKIPPED.labels(reason).inc()
        self.counts[f"skipped_{reason}"] += 1

    def buffered(self, rows: int) -> None:
        LOG_BUFFERED.set(rows)
