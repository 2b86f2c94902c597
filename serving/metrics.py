"""Prometheus series for inference, shared by the REST route and the gRPC servicer.

One series per (model, protocol, status): ``status`` is the HTTP code for REST and the gRPC
status name (OK, INVALID_ARGUMENT, ...) for gRPC, so one dashboard covers both protocols.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
