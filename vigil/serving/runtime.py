"""One worker's serving state: model, validator, batcher, metrics — shared by all routes."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vigil.config import Settings
from vigil.serving.batcher import Batcher
from vigil.serving.errors import NotReady, RequestError
from vigil.serving.metrics import ServingMetrics
from vigil.serving.monitoring import BatchFeed
from vigil.serving.model import OnnxModel
from vigil.serving.source import ModelFolder, locate
from vigil.serving.validation import ParsedRequest, Validator

# under "bentoml" so the lines land in the server log BentoML configures
log = logging.getLogger("bentoml.vigil")

# A batch slower than this runs in a worker thread instead of inline on the event loop.
# Measured: iris/logreg takes ~6 µs per call, where a thread hand-off alone costs more
# (tens of µs plus GIL ping-pong); a 300-tree forest takes milliseconds, which would stall
# every connection on the loop. ORT releases the GIL while it runs, so the thread helps.
INLINE_LIMIT_S = 0.0005


class IdGenerator:
    """Request ids: a random per-worker prefix + a counter (uuid4 per row is measurably slower)."""

    def __init__(self) -> None:
        self.prefix = f"{os.getpid():x}{secrets.token_hex(3)}"
        self._counter = itertools.count(1)

    def take(self, n: int) -> list[str]:
        prefix, counter = self.prefix, self._counter
        return [f"{prefix}-{next(counter)}" for _ in range(n)]


class Runtime:
    """Loads the model once per worker, then answers validated requests through the batcher."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ready = False
        self.model: OnnxModel | None = None
        self.folder: ModelFolder | None = None
        self.validator: Validator | None = None
        self.batcher: Batcher | None = None
        self.metrics: ServingMetrics | None = None
        self.ids = IdGenerator()
        self.feed: BatchFeed | None = None  # the monitor's profile producer (VIGIL_PROFILE_STREAM)
        self._executor: ThreadPoolExecutor | None = None
        self._grpc: Any = None  # the OIP gRPC server (grpc.aio.Server) when VIGIL_GRPC_PORT != 0

    def load(self, packed: Path | None = None) -> None:
        """Locate, load and warm the model (blocking; run before serving traffic)."""
        s = self.settings
        self.folder = locate(s, packed)
        self.model = OnnxModel(self.folder.path, threads=s.ort_threads)
        self.validator = Validator(self.model.schema, s.max_rows_per_request)
        warm_s = self.model.warm_up(rows=s.max_batch_size)
        if warm_s > INLINE_LIMIT_S:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="vigil-ort")
        schema = self.model.schema
        log.info(
            "vigil: serving %s v%s from %s (%s); warm batch of %d took %.2f ms, inference %s",
            schema.model_name, schema.model_version, self.folder.path, self.folder.origin,
            s.max_batch_size, warm_s * 1e3, "in a thread" if self._executor else "inline",
        )

    async def start(self) -> None:
        """Start the batcher on the running loop and mark the worker ready."""
        assert self.model is not None, "load() first"
        schema = self.model.schema
        self.metrics = ServingMetrics(schema.model_name, schema.model_version)
        self.batcher = Batcher(
            self.model.predict,
            max_batch_size=self.settings.max_batch_size,
            max_latency_s=self.settings.batch_latency_ms / 1000.0,
            max_queue_rows=self.settings.max_queue_rows,
            executor=self._executor,
            observer=self.metrics,
            on_batch=self._served,
        )
        self.batcher.start()
        # Warm the whole path once (validation -> batcher -> split) before saying ready.
        dummy = self.model.dummy_inputs(1)
        await self.batcher.submit(dummy, 1)
        if self.settings.profile_stream:
            # Created here, in the worker, so its metrics land in the multiprocess registry.
            self.feed = BatchFeed(self.settings, schema)
            self.feed.start()
        self.ready = True
        if self.settings.grpc_port:
            # On this loop, so gRPC requests queue into the same batcher as HTTP ones.
            from vigil.serving.oip_grpc import start_grpc

            self._grpc = await start_grpc(self)

    async def stop(self) -> None:
        self.ready = False
        if self._grpc is not None:
            from vigil.serving.oip_grpc import stop_grpc

            await stop_grpc(self._grpc)
            self._grpc = None
        if self.batcher is not None:
            await self.batcher.stop()
        if self.feed is not None:
            await asyncio.to_thread(self.feed.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def parse(self, body: bytes) -> ParsedRequest:
        if not self.ready or self.validator is None:
            raise NotReady("not_ready", "the model is still loading")
        return self.validator.parse_body(body)

    def check(self, payload: Any) -> ParsedRequest:
        if not self.ready or self.validator is None:
            raise NotReady("not_ready", "the model is still loading")
        return self.validator.validate(payload)

    async def predict(self, request: ParsedRequest) -> dict[str, Any]:
        """Run one validated request through the shared batcher and build the answer."""
        assert self.batcher is not None and self.model is not None
        # Ids are fixed before batching so the batch's profile can carry them per row.
        ids = request.ids if request.ids is not None else self.ids.take(request.rows)
        result = await self.batcher.submit(request.inputs, request.rows, ids)
        if self.metrics is not None:
            self.metrics.answered(request.rows)
        schema = self.model.schema
        answer: dict[str, Any] = {"predictions": result.labels.tolist()}
        if result.probabilities is not None:
            answer["probabilities"] = result.probabilities.tolist()
            answer["classes"] = schema.classes
        answer["request_ids"] = ids
        answer["model"] = {"name": schema.model_name, "version": schema.model_version}
        return answer

    def _served(self, inputs: dict[str, Any], prediction: Any, ids: list[str]) -> None:
        if self.feed is not None:
            self.feed(inputs, prediction, ids)

    def refused(self, error: RequestError) -> None:
        if self.metrics is not None:
            self.metrics.refused(error.reason)

    def metadata(self) -> dict[str, Any]:
        """What /metadata reports: model identity, input schema, outputs, parity summary."""
        if self.model is None or self.folder is None:
            raise NotReady("not_ready", "the model is still loading")
        schema = self.model.schema
        return {
            "model": {"name": schema.model_name, "version": schema.model_version, "source": self.folder.origin},
            "task": schema.task,
            "inputs": {
                "features": [{"name": f.name, "type": f.type} for f in schema.features],
                "onnx_inputs": [{"name": i.name, "type": i.type, "columns": i.columns} for i in schema.onnx_inputs],
            },
            "outputs": {
                "label": schema.label_output,
                "probabilities": schema.probability_output,
                "classes": schema.classes,
            },
            "parity": _parity_summary(self.model.parity),
            "batching": {
                "max_batch_size": self.settings.max_batch_size,
                "max_latency_ms": self.settings.batch_latency_ms,
                "max_rows_per_request": self.settings.max_rows_per_request,
            },
        }


def _parity_summary(parity: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline of the converter's parity report (it may carry large per-row detail)."""
    if parity is None:
        return None
    return {k: v for k, v in parity.items() if not isinstance(v, (list, dict)) or k in ("thresholds", "summary")}
