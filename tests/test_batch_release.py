"""Why each batch left the queue, which protocols it held, how long its oldest request waited."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from prometheus_client import CollectorRegistry

from serving.batcher import RELEASE_REASONS, Batcher
from serving.errors import Overloaded
from serving.metrics import ServingMetrics
from serving.model import Prediction


class Model:
    executor = None

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        return Prediction(inputs["X"][:, 0], None)


class Releases:
    """A BatchObserver recording every release."""

    def __init__(self) -> None:
        self.released: list[tuple[str, dict[str, int], float]] = []

    def batch_done(self, rows: int, seconds: float, ok: bool) -> None:
        pass

    def queue_changed(self, rows: int) -> None:
        pass

    def batch_released(self, reason: str, rows_by_protocol: dict[str, int], oldest_wait_s: float) -> None:
        self.released.append((reason, rows_by_protocol, oldest_wait_s))


def _run(sends: list[tuple[int, str | None, object]], **options) -> list[tuple[str, dict[str, int], float]]:
    """Submit every (rows, protocol, model) in the same loop turn; return the releases seen."""
    observer = Releases()

    async def body() -> None:
        batcher = Batcher(**{"max_batch_size": 8, "max_latency_s": 0.5, "max_queue_rows": 100, **options},
                          observer=observer)
        batcher.start()
        try:
            await asyncio.gather(*(batcher.submit({"X": np.zeros((n, 1))}, n, None, model, protocol)
                                   for n, protocol, model in sends))
        finally:
            await batcher.stop()

    asyncio.run(body())
    return observer.released


def test_each_release_reason_is_the_true_one():
    model = Model()
    assert [r for r, _, _ in _run([(1, "http", model)])] == ["idle"]  # alone, nothing else came
    # max_latency 0: the deadline has passed by the time the queue runs dry
    assert [r for r, _, _ in _run([(1, "http", model)], max_latency_s=0.0)] == ["latency"]
    # 4 + 4 rows reach max_batch_size; the third request waits for the next batch
    assert [r for r, _, _ in _run([(4, "http", model)] * 3)] == ["full", "idle"]
    assert [r for r, _, _ in _run([(4, "http", model), (5, "grpc", model)])] == ["full", "idle"]
    # the next request was validated for another model version
    assert [r for r, _, _ in _run([(1, "http", model), (1, "http", Model())])] == ["swap", "idle"]
    assert set(RELEASE_REASONS) == {"full", "latency", "idle", "swap"}


def test_a_release_knows_each_protocols_rows_and_internal_requests_stay_out():
    model = Model()
    (reason, rows, wait), = _run([(1, "http", model), (2, "grpc", model), (1, None, model), (3, "http", model)])
    assert reason == "idle" and rows == {"http": 4, "grpc": 2} and 0.0 <= wait < 0.5
    assert _run([(1, None, model)]) == []  # the warm-up is not a served batch


def test_serving_metrics_count_batches_by_protocols_and_release_reason():
    registry = CollectorRegistry()
    metrics = ServingMetrics("iris", "1", registry=registry)
    for reason in RELEASE_REASONS:  # exported at 0 before the first batch
        assert registry.get_sample_value("vigil_batch_release_total", {"reason": reason}) == 0
    assert registry.get_sample_value("vigil_batches_total", {"protocols": "grpc+http"}) == 0
    metrics.batch_released("idle", {"http": 1, "grpc": 2}, 0.003)
    metrics.batch_released("full", {"http": 8}, 0.0002)
    metrics.batch_released("latency", {"grpc": 5}, 0.02)
    value = registry.get_sample_value
    assert [value("vigil_batches_total", {"protocols": p}) for p in ("http", "grpc", "grpc+http")] == [1, 1, 1]
    assert [value("vigil_batch_release_total", {"reason": r}) for r in ("full", "latency", "idle")] == [1, 1, 1]
    assert value("vigil_batch_queue_wait_seconds_count") == 3
    assert abs(value("vigil_batch_queue_wait_seconds_sum") - 0.0232) < 1e-9
    assert value("vigil_batch_queue_wait_seconds_bucket", {"le": "0.005"}) == 2
    assert value("vigil_batch_protocol_rows_sum", {"protocol": "http"}) == 9
    assert value("vigil_batch_protocol_rows_count", {"protocol": "grpc"}) == 2


def test_stopping_answers_the_batch_in_flight_too():
    """Callers that wait on the future (gRPC threads) must not wait forever when the worker stops."""
    class Slow(Model):
        executor = ThreadPoolExecutor(1)

        def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
            time.sleep(0.2)
            return super().predict(inputs)

    async def body():
        batcher = Batcher(max_batch_size=8, max_latency_s=0.001, max_queue_rows=100)
        batcher.start()
        future = batcher.enqueue({"X": np.zeros((1, 1))}, 1, None, Slow(), "grpc")
        await asyncio.sleep(0.05)  # the batch is running in the executor now
        await batcher.stop()
        return future

    future = asyncio.run(body())
    assert future.done() and isinstance(future.exception(), Overloaded)
