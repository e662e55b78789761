"""Vigil's serving metrics, with prometheus_client directly.

BentoML runs each worker as its own process and sets PROMETHEUS_MULTIPROC_DIR for them;
prometheus_client then writes every sample to per-process files in that directory, and
`render()` sums them with a MultiProcessCollector so /metrics on any worker shows totals
across all workers. Metrics are therefore created lazily, inside the worker, once that
variable is set — never at import time in the parent process.
"""

from __future__ import annotations

import os
import time
from typing import Any

from serving.batcher import RELEASE_REASONS

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
WAIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# vigil_batches_total{protocols}: the sorted protocols of a batch's requests joined by "+".
BATCH_PROTOCOLS = ("http", "grpc", "grpc+http")
# vigil_model_swap_failures_total reasons (serving/swap/reload.py), exported at 0 from the
# start: a series born at 1 shows no increase() in Prometheus, and the alert would miss it.
SWAP_FAILURE_REASONS = ("registry", "not_servable", "download", "load", "warm")


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
        # Proof that the protocols share batches, and why each batch left the queue
        # (serving/batcher.py); every label exported at 0 so increase() sees the first one.
        self.batches = Counter("vigil_batches_total", "Batches run, by the protocols of the requests they hold.",
                               ["protocols"], **reg)
        self.releases = Counter("vigil_batch_release_total", "Batches released from the queue, by reason.",
                                ["reason"], **reg)
        self.queue_wait = Histogram("vigil_batch_queue_wait_seconds",
                                    "Time the oldest request of each batch waited in the queue.",
                                    buckets=WAIT_BUCKETS, **reg)
        self.protocol_rows = Histogram("vigil_batch_protocol_rows",
                                       "Rows each protocol put in a batch (one observation per protocol present).",
                                       ["protocol"], buckets=BATCH_BUCKETS, **reg)
        self._batches = {p: self.batches.labels(p) for p in BATCH_PROTOCOLS}
        self._releases = {r: self.releases.labels(r) for r in RELEASE_REASONS}
        self._protocol_rows = {p: self.protocol_rows.labels(p) for p in ("http", "grpc")}
        self._request: dict[str, Any] = {}  # protocol -> its vigil_request_seconds child
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
        # 1 for the version a worker serves, 0 once it swapped away. A sample cannot be
        # deleted from a live worker's multiprocess file, so the old version is set to 0
        # rather than removed; livemax = the max over live workers only, so a version any
        # worker still serves reads 1, and dead workers' files (and their series) drop out.
        self.info = Gauge(
            "vigil_model_info", "1 for the model version being served, 0 for versions swapped out.",
            ["model", "version"], multiprocess_mode="livemax", **reg,
        )
        self.swaps = Counter("vigil_model_swaps_total", "Hot swaps to a new model version.", **reg)
        self.swap_failures = Counter(
            "vigil_model_swap_failures_total", "Versions (or registry polls) that could not be swapped in, by reason.",
            ["reason"], **reg,
        )
        self.last_swap = Gauge(
            "vigil_model_last_swap_timestamp_seconds", "Unix time the serving version started serving (load or swap).",
            multiprocess_mode="livemax", **reg,
        )
        for reason in SWAP_FAILURE_REASONS:
            self.swap_failures.labels(reason)
        # 1 while serving a cached model because the registry cannot be reached (serving/source.py).
        self.degraded = Gauge(
            "vigil_degraded", "1 while a worker serves degraded, by reason.", ["reason"],
            multiprocess_mode="livemax", **reg,
        )
        self.info.labels(model, version).set(1)
        self.last_swap.set(time.time())
        self._ok = self.predictions.labels(model, version, "ok")
        self._failed = self.predictions.labels(model, version, "error")
        self._answered = {version: self._ok}

    # BatchObserver: called by the batcher
    def batch_done(self, rows: int, seconds: float, ok: bool) -> None:
        self.inference.observe(seconds)
        self.batch_size.observe(rows)
        if not ok:
            self._failed.inc(rows)

    def queue_changed(self, rows: int) -> None:
        self.queue_rows.set(rows)

    def batch_released(self, reason: str, rows_by_protocol: dict[str, int], oldest_wait_s: float) -> None:
        key = "+".join(sorted(rows_by_protocol))
        counter = self._batches.get(key) or self._batches.setdefault(key, self.batches.labels(key))
        counter.inc()
        self._releases[reason].inc()
        self.queue_wait.observe(oldest_wait_s)
        for protocol, rows in rows_by_protocol.items():
            histogram = self._protocol_rows.get(protocol) or self._protocol_rows.setdefault(
                protocol, self.protocol_rows.labels(protocol))
            histogram.observe(rows)

    def answered(self, rows: int, version: str | None = None) -> None:
        """Count rows answered, under the version that served them (default: the current one)."""
        if version is None or version == self.version:
            self._ok.inc(rows)
            return
        child = self._answered.get(version)
        if child is None:  # stragglers of a version swapped out moments ago
            child = self._answered[version] = self.predictions.labels(self.model, version, "ok")
        child.inc(rows)

    # Hot swap (serving/swap/reload.py)
    def swapped(self, version: str) -> None:
        """The worker now serves `version`: info flips, swap counted and timestamped."""
        if version == self.version:
            return
        self.info.labels(self.model, self.version).set(0)
        self.info.labels(self.model, version).set(1)
        self.version = version
        self._ok = self._answered.get(version) or self.predictions.labels(self.model, version, "ok")
        self._answered[version] = self._ok
        self._failed = self.predictions.labels(self.model, version, "error")
        self.swaps.inc()
        self.last_swap.set(time.time())

    def set_degraded(self, on: bool, reason: str = "registry_unreachable") -> None:
        self.degraded.labels(reason).set(1 if on else 0)

    def swap_failed(self, reason: str) -> None:
        self.swap_failures.labels(reason).inc()

    def request_done(self, seconds: float, protocol: str = "http") -> None:
        # the labelled child resolved once per protocol: labels() per request cost ~1 % of a gRPC call
        child = self._request.get(protocol) or self._request.setdefault(protocol, self.request.labels(protocol))
        child.observe(seconds)

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
