"""The adaptive batcher: batches form, results split back, failures stay isolated, queue is bounded."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from serving.batcher import Batcher
from serving.errors import Overloaded
from serving.model import Prediction


class Recorder:
    """A fake model that doubles its input and records each batch's size (runs inline)."""

    executor = None

    def __init__(self, poison: float | None = None) -> None:
        self.batches: list[int] = []
        self.poison = poison

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        x = inputs["X"]
        self.batches.append(len(x))
        if self.poison is not None and (x == self.poison).any():
            raise RuntimeError("poisoned row")
        return Prediction(x[:, 0] * 2, np.column_stack([x[:, 0], -x[:, 0]]))


def _rows(start: int, n: int) -> dict[str, np.ndarray]:
    return {"X": np.arange(start, start + n, dtype=np.float64).reshape(n, 1)}


class _Bound:
    """A batcher whose submits all run on one model (what the tests exercise)."""

    def __init__(self, batcher: Batcher, model: Recorder) -> None:
        self.batcher, self.model = batcher, model

    def submit(self, inputs: dict[str, np.ndarray], rows: int):
        return self.batcher.submit(inputs, rows, None, self.model)


async def _with_batcher(model, body, **options):
    settings = {"max_batch_size": 8, "max_latency_s": 0.005, "max_queue_rows": 100} | options
    batcher = Batcher(**settings)
    batcher.start()
    try:
        return await body(_Bound(batcher, model))
    finally:
        await batcher.stop()


def test_concurrent_requests_share_batches_and_get_their_own_rows():
    model = Recorder()

    async def body(batcher):
        sizes = [1, 3, 2, 1, 4, 1]
        starts = np.cumsum([0, *sizes[:-1]]) * 10
        results = await asyncio.gather(*(batcher.submit(_rows(int(s), n), n) for s, n in zip(starts, sizes)))
        for (s, n), result in zip(zip(starts, sizes), results):
            np.testing.assert_array_equal(result.labels, np.arange(s, s + n) * 2)
            np.testing.assert_array_equal(result.probabilities[:, 1], -np.arange(s, s + n))
        return sizes

    sizes = asyncio.run(_with_batcher(model, body))
    assert sum(model.batches) == sum(sizes)
    assert len(model.batches) < len(sizes), model.batches  # some requests were batched together
    assert max(model.batches) <= 8


def test_lone_request_is_not_held_for_max_latency():
    async def body(batcher):
        loop = asyncio.get_running_loop()
        start = loop.time()
        await batcher.submit(_rows(0, 1), 1)
        return loop.time() - start

    elapsed = asyncio.run(_with_batcher(Recorder(), body, max_latency_s=0.5))
    assert elapsed < 0.1


def test_request_larger_than_batch_size_runs_alone():
    model = Recorder()

    async def body(batcher):
        result = await batcher.submit(_rows(0, 20), 20)
        return result

    result = asyncio.run(_with_batcher(model, body))
    assert len(result.labels) == 20 and model.batches == [20]


def test_failing_request_does_not_fail_its_batch_mates():
    model = Recorder(poison=13.0)

    async def body(batcher):
        return await asyncio.gather(
            batcher.submit(_rows(0, 2), 2), batcher.submit(_rows(13, 1), 1), batcher.submit(_rows(20, 2), 2),
            return_exceptions=True,
        )

    good1, bad, good2 = asyncio.run(_with_batcher(model, body))
    assert isinstance(bad, RuntimeError)
    np.testing.assert_array_equal(good1.labels, [0, 2])
    np.testing.assert_array_equal(good2.labels, [40, 42])


def test_queue_bound_sheds_load():
    async def body(batcher):
        # Fill the queue without letting the consumer run: submit() enqueues synchronously.
        tasks = [asyncio.ensure_future(batcher.submit(_rows(i, 4), 4)) for i in range(5)]
        await asyncio.sleep(0)  # each task enqueues 4 rows; the 3rd exceeds 10 rows
        results = await asyncio.gather(*tasks, return_exceptions=True)
        return results

    results = asyncio.run(_with_batcher(Recorder(), body, max_queue_rows=10))
    shed = [r for r in results if isinstance(r, Overloaded)]
    assert shed, results
    assert all(r.status == 503 and r.reason == "overloaded" for r in shed)
    assert any(isinstance(r, Prediction) for r in results)


def test_submit_before_start_is_an_error():
    batcher = Batcher(max_batch_size=4, max_latency_s=0.001, max_queue_rows=10)
    with pytest.raises(RuntimeError, match="not started"):
        asyncio.run(batcher.submit(_rows(0, 1), 1, None, Recorder()))
