"""An adaptive batcher: one per worker, shared by every route (HTTP, native API, OIP REST, gRPC).

Modelled on MLServer's adaptive batching (mlserver/batching/adaptive.py): requests queue
up, one consumer collects them until `max_batch_size` rows or `max_latency` has passed,
runs the model once on the concatenated rows and hands each request its own slice.

One difference on purpose: when nothing else is waiting after one turn of the event loop
the batch is flushed at once instead of sitting out the full `max_latency`. On a single
event loop every request that arrived together has been parsed by then, so waiting longer
only adds latency at low load (it would break a 2 ms p99 at one client); under load the
queue refills within the loop turn and batches grow by themselves.

Why a batch was released (`RELEASE_REASONS`, reported to the observer with the
protocols it holds and how long its oldest request waited):
"full" the next request would not fit in `max_batch_size` (or the batch reached it),
"latency" `max_latency` passed while requests kept arriving, "idle" nothing else
arrived within one loop turn, "swap" the next request was validated for another model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

from serving.errors import Overloaded

from serving.model import Prediction

log = logging.getLogger("bentoml.vigil")


class BatchModel(Protocol):
    """What runs a batch: the Runtime's ServingModel (one model version)."""

    executor: Executor | None  # None = run inline on the event loop

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction: ...


# Called once per successful batch with its inputs, result, per-row request ids and the
# model that answered (the monitor's producer). It must only enqueue: it runs on the
# serving path.
OnBatch = Callable[[dict[str, np.ndarray], Prediction, list[str], Any], None]


RELEASE_REASONS = ("full", "latency", "idle", "swap")


class BatchObserver(Protocol):
    def batch_done(self, rows: int, seconds: float, ok: bool) -> None: ...

    def queue_changed(self, rows: int) -> None: ...

    def batch_released(self, reason: str, rows_by_protocol: dict[str, int], oldest_wait_s: float) -> None: ...


class _NullObserver:
    def batch_done(self, rows: int, seconds: float, ok: bool) -> None:
        pass

    def queue_changed(self, rows: int) -> None:
        pass

    def batch_released(self, reason: str, rows_by_protocol: dict[str, int], oldest_wait_s: float) -> None:
        pass


@dataclass
class _Item:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future = field(repr=False)
    ids: list[str] | None
    # A batch never mixes models, so a hot swap cannot run rows validated for one
    # model version on another.
    model: BatchModel
    protocol: str | None  # "http" / "grpc"; None = internal (the warm-up), not in the batch metrics
    queued_at: float  # time.monotonic() at submit


class Batcher:
    """Collects validated requests into batches and runs their model once per batch."""

    def __init__(
        self,
        *,
        max_batch_size: int,
        max_latency_s: float,
        max_queue_rows: int,
        observer: BatchObserver | None = None,
        on_batch: OnBatch | None = None,
    ) -> None:
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_s
        self.max_queue_rows = max_queue_rows
        self._observer = observer or _NullObserver()
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self.queued_rows = 0
        self._wakeup: asyncio.Event | None = None
        self._batch: list[_Item] = []  # the batch being collected or run
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the consumer task on the running loop."""
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._consume(), name="vigil-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        # the batch being collected or run when the consumer was cancelled, then the queue:
        # every caller gets an answer (gRPC threads wait on these futures, not on a Task)
        for item in [*self._batch, *self._queue]:
            if not item.future.done():
                item.future.set_exception(Overloaded("shutting_down", "the server is shutting down"))
        self._queue.clear()
        self._batch = []

    async def submit(self, inputs: dict[str, np.ndarray], rows: int, ids: list[str] | None, model: BatchModel,
                     protocol: str | None = None) -> Prediction:
        """Queue one request's rows and wait for its slice of the batch result.

        `ids` (one per row) reach `on_batch`; a batch holding a request without ids
        (the warm-up) is not reported. `model` runs the request's batch. `protocol`
        ("http", "grpc") labels the batch metrics; None keeps the request out of them.
        """
        return await self.enqueue(inputs, rows, ids, model, protocol)

    def enqueue(self, inputs: dict[str, np.ndarray], rows: int, ids: list[str] | None, model: BatchModel,
                protocol: str | None = None) -> asyncio.Future:
        """`submit` without the coroutine: the future of the request's slice (callers that add a callback)."""
        if self._task is None or self._wakeup is None:
            raise RuntimeError("batcher not started")
        # Bounded queue: shed instead of letting latency grow without limit. A lone
        # request is always admitted so a big (but allowed) request cannot starve.
        if self.queued_rows and self.queued_rows + rows > self.max_queue_rows:
            raise Overloaded("overloaded", f"the server queue is full ({self.queued_rows} rows waiting); retry shortly")
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(inputs, rows, future, ids, model, protocol, time.monotonic()))
        self.queued_rows += rows
        self._observer.queue_changed(self.queued_rows)
        self._wakeup.set()
        return future

    async def _consume(self) -> None:
        assert self._wakeup is not None
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            items = await self._collect()
            await self._run(items)

    def _pop(self) -> _Item:
        item = self._queue.popleft()
        self.queued_rows -= item.rows
        return item

    async def _collect(self) -> list[_Item]:
        items = self._batch = [self._pop()]
        rows, model = items[0].rows, items[0].model
        deadline = time.monotonic() + self.max_latency_s
        reason = "full"
        while rows < self.max_batch_size:
            if self._queue:
                if self._queue[0].model is not model:
                    reason = "swap"
                    break
                if rows + self._queue[0].rows > self.max_batch_size:
                    break  # "full": the next request does not fit
                item = self._pop()
                items.append(item)
                rows += item.rows
                continue
            if time.monotonic() >= deadline:
                reason = "latency"
                break
            await asyncio.sleep(0)  # one loop turn: requests parsed meanwhile join
            if not self._queue:
                reason = "idle"
                break
        self._observer.queue_changed(self.queued_rows)
        self._released(items, reason)
        return items

    def _released(self, items: list[_Item], reason: str) -> None:
        by_protocol: dict[str, int] = {}
        for item in items:
            if item.protocol is not None:
                by_protocol[item.protocol] = by_protocol.get(item.protocol, 0) + item.rows
        if by_protocol:  # the oldest request is the first: the queue is FIFO
            self._observer.batch_released(reason, by_protocol, time.monotonic() - items[0].queued_at)

    async def _run(self, items: list[_Item]) -> None:
        live = [item for item in items if not item.future.done()]  # drop cancelled callers
        if not live:
            return
        try:
            inputs = _concat([i.inputs for i in live])
            prediction = await self._call(live[0].model, inputs, sum(i.rows for i in live))
        except Exception as exc:
            if len(live) == 1:
                live[0].future.set_exception(exc)
                return
            # One poisoned request must not fail its batch-mates: retry them one by one.
            for item in live:
                await self._run([item])
            return
        offset = 0
        for item in live:
            end = offset + item.rows
            if not item.future.done():
                probabilities = prediction.probabilities
                item.future.set_result(
                    Prediction(
                        prediction.labels[offset:end],
                        None if probabilities is None else probabilities[offset:end],
                    )
                )
            offset = end
        # After the answers are handed out: profiling is never on a request's clock.
        if self._on_batch is not None and all(i.ids is not None for i in live):
            self._report(inputs, prediction, live)

    def _report(self, inputs: dict[str, np.ndarray], prediction: Prediction, live: list[_Item]) -> None:
        assert self._on_batch is not None
        ids = live[0].ids if len(live) == 1 else [rid for i in live for rid in i.ids]  # type: ignore[union-attr]
        try:
            self._on_batch(inputs, prediction, ids, live[0].model)  # type: ignore[arg-type]
        except Exception:  # monitoring must never fail a prediction
            log.exception("vigil: could not hand a served batch to the profile stream")

    async def _call(self, model: BatchModel, inputs: dict[str, np.ndarray], rows: int) -> Prediction:
        infer, executor = model.predict, model.executor
        start = time.perf_counter()
        ok = False
        try:
            if executor is None:
                result = infer(inputs)
            else:
                result = await asyncio.get_running_loop().run_in_executor(executor, infer, inputs)
            ok = True
            return result
        finally:
            self._observer.batch_done(rows, time.perf_counter() - start, ok)


def _concat(all_inputs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(all_inputs) == 1:
        return all_inputs[0]
    return {name: np.concatenate([inputs[name] for inputs in all_inputs]) for name in all_inputs[0]}
