"""Vigil's serving metrics, with prometheus_client directly.

BentoML runs each worker as its own process and sets PROMETHEUS_MULTIPROC_DIR for them;
prometheus_client then writes every sample to per-process files in that directory, and
`render()` sums them with a MultiProcessCollector so /metrics on any worker shows totals
across all workers. Metrics are therefore created lazily, inside the worker, once that
variable is set — never at import time in the parent process.
"""

from __future__ import annotations

import os

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
    """The serving path's counters, histograms and gauges for one model version."""

    def __init__(self, model: str, version: str, registry: object | None = None) -> None:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        reg = {"registry": registry if registry is not None else REGISTRY}

        self.model, self.version = model, version
        self.predictions = Counter(
            "vigil_predictions_total", "Rows answered, by outcome.", ["model", "version", "outcome"], **reg
        )
        self.rejected = Counter("vigil_rejected_requests_total", "Requests refused, by reason.", ["reason"], **reg)
        self.inference = Histogram(
            "vigil_inference_seconds", "ONNX Runtime time per batch.", buckets=LATENCY_BUCKETS, **reg
        )
        self.batch_size = Histogram("vigil_batch_size", "Rows per batch.", buckets=BATCH_BUCKETS, **reg)
        # protocol: "http" (/predict, /v1/predict, /v2 REST) or "grpc"; its _count is the
        # per-protocol request counter, while vigil_batch_size stays one histogram because
        # both protocols feed the same batches.
        self.request = Histogram(
            "vigil_request_seconds", "Time to answer one prediction request, by protocol.", ["protocol"],
            buckets=LATENCY_BUCKETS, **reg
        )
        # livesum: the total waiting across the live workers, not one value per pid.
        self.queue_rows = Gauge(
            "vigil_queue_rows", "Rows waiting in the batch queue.", multiprocess_mode="livesum", **reg
        )
        self.info = Gauge(
            "vigil_model_info", "The model version being served (always 1).", ["model", "version"],
            multiprocess_mode="livemax", **reg,
        )
        self.info.labels(model, version).set(1)
        self._ok = self.predictions.labels(model, version, "ok")
        self._failed = self.predictions.labels(model, version, "error")

    # BatchObserver: called by the batcher
    def batch_done(self, rows: int, seconds: float, ok: bool) -> None:
        self.inference.observe(seconds)
        self.batch_size.observe(rows)
        if not ok:
            self._failed.inc(rows)

    def queue_changed(self, rows: int) -> None:
        self.queue_rows.set(rows)

    def answered(self, rows: int) -> None:
        self._ok.inc(rows)

    def request_done(self, seconds: float, protocol: str = "http") -> None:
        self.request.labels(protocol).observe(seconds)

    def refused(self, reason: str) -> None:
        self.rejected.labels(reason).inc()


def render() -> tuple[bytes, str]:
    """The exposition text for /metrics, summed across worker processes when multi-process."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
