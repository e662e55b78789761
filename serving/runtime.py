"""One worker's serving state: model bundle, batcher, metrics, producer, reloader — shared by all routes.

Every transport (the /predict fast path, /v1/predict, OIP REST, gRPC) does the same four
things through it: `admit` (token + in-flight limit), `parse`/`check`, `predict`,
`answered` (or `refused`), then `release`.

Hot swap invariant: `self.serving` (one immutable ServingModel) is replaced only on the
event loop (`_install_on_loop`), and every request is validated and queued with the
bundle current at that moment in the same synchronous step (no await between parse
and `batcher.submit`); the queued item keeps its bundle, so in-flight requests finish
on the model that accepted them and report its version.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Mapping

from vigil import auth
from vigil.config import Settings
from serving.batcher import Batcher
from serving.bundle import ServingModel, describe, load_bundle
from serving.errors import NotReady, Overloaded, RequestError, Unauthorized
from serving.metrics import ServingMetrics
from serving.producer.feed import BatchFeed
from serving.source import locate
from serving.process_metrics import start_sampling, worker_index
from serving.swap.reload import Reloader, WebhookVerdict, authorize_webhook, follows_alias, read_webhook
from serving.validation import ParsedRequest

# under "bentoml" so the lines land in the server log BentoML configures
log = logging.getLogger("bentoml.vigil")

SWAP_TIMEOUT_S = 30.0  # the loop must run the swap within this, or the reload thread gives up


class IdGenerator:
    """Request ids: a random per-worker prefix + a zero-padded hex counter (uuid4 per row is slower).

    Padded, the ids of one worker sort in the order they were served, so each row group
    of the prediction log (sorted by id) covers one narrow id range: the monitor's label
    join then reads only the row group that holds a labelled id (monitor/row_index.py).
    """

    def __init__(self) -> None:
        self.prefix = f"{os.getpid():x}{secrets.token_hex(3)}"
        self._counter = itertools.count(1)

    def take(self, n: int) -> list[str]:
        prefix, counter = self.prefix, self._counter
        return [f"{prefix}-{next(counter):012x}" for _ in range(n)]


class Runtime:
    """Loads the model once per worker, then answers validated requests through the batcher."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ready = False
        self.serving: ServingModel | None = None  # replaced whole on a hot swap, never mutated
        self.batcher: Batcher | None = None
        self.metrics: ServingMetrics | None = None
        self.ids = IdGenerator()
        self.feed: BatchFeed | None = None  # the monitor's producer (VIGIL_PROFILE_STREAM, VIGIL_PREDICTION_LOG)
        self._executor: ThreadPoolExecutor | None = None
        self.reloader: Reloader | None = None  # set when serving models:/NAME@ALIAS
        self._packed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.degraded: str | None = None  # why the worker serves a cached model (registry unreachable)
        # Bearer tokens (vigil/auth.py), None = not required: with predictions open the
        # prediction routes pay exactly one attribute check for access control.
        self.predict_token: bytes | None = auth.predict_token(settings).encode() or None
        self.api_token: bytes | None = auth.api_token(settings).encode() or None
        # Prediction requests in flight on this worker (see `admit`); touched on the event loop only.
        self.in_flight = 0
        self._max_in_flight = settings.max_concurrent_requests

    def load(self, packed: Path | None = None) -> None:
        """Locate, load and warm the model (blocking; run before serving traffic)."""
        self._packed = packed is not None
        bundle = self._with_executor(load_bundle(self.settings, locate(self.settings, packed)))
        self.serving = bundle
        self.degraded = bundle.folder.degraded
        log.info(
            "vigil: serving %s v%s from %s (%s); warm batch of %d took %.2f ms, inference %s",
            bundle.name, bundle.version, bundle.folder.path, bundle.folder.origin,
            self.settings.max_batch_size, bundle.warm_seconds * 1e3, "in a thread" if bundle.executor else "inline",
        )

    def _with_executor(self, bundle: ServingModel) -> ServingModel:
        """Slow models run in the worker's single ORT thread (created on first need)."""
        if not bundle.slow:
            return bundle
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="vigil-ort")
        return bundle.with_executor(self._executor)

    async def start(self) -> None:
        """Start the producer and the batcher on the running loop and mark the worker ready."""
        bundle = self.serving
        assert bundle is not None, "load() first"
        self._loop = asyncio.get_running_loop()
        self.metrics = ServingMetrics(bundle.name, bundle.version)
        self.metrics.set_degraded(self.degraded is not None)
        start_sampling("worker", worker_index())  # process_* on /metrics (serving/process_metrics.py)
        if self.settings.profile_stream or self.settings.prediction_log_dir is not None:
            # Created here, in the worker, so its metrics land in the multiprocess registry;
            # its agent process profiles (VIGIL_PROFILE_STREAM) and logs rows (VIGIL_PREDICTION_LOG).
            self.feed = BatchFeed(self.settings)
            self.feed.start()
        self.batcher = Batcher(
            max_batch_size=self.settings.max_batch_size,
            max_latency_s=self.settings.batch_latency_ms / 1000.0,
            max_queue_rows=self.settings.max_queue_rows,
            observer=self.metrics,
            on_batch=self.feed,  # every served batch goes straight to the producer
        )
        self.batcher.start()
        # Warm the whole path once (validation -> batcher -> split) before saying ready;
        # a request without ids is never reported to the producer.
        await self.batcher.submit(bundle.model.dummy_inputs(1), 1, None, bundle)
        self.ready = True
        self._start_reloader()

    def _start_reloader(self) -> None:
        ref = follows_alias(self.settings, self._packed)
        if ref is None:
            return
        assert self.metrics is not None
        self.reloader = Reloader(self.settings, ref, self._current, self.install, self.metrics.swap_failed,
                                 health=self._registry_health)
        self.reloader.start()
        interval = self.settings.reload_interval_seconds
        log.info("vigil: following %s (poll every %s)", ref, f"{interval:g} s" if interval else "never; webhooks only")
        if not interval and self.settings.workers > 1:
            # A webhook lands on one worker: without polling the others would never swap.
            log.warning("vigil: VIGIL_RELOAD_INTERVAL_SECONDS=0 with %d workers: a webhook swaps only the worker "
                        "that receives it; set an interval so every worker follows %s", self.settings.workers, ref)

    def _registry_health(self, problem: str | None) -> None:
        """Reload thread: the registry answered (None) or not (why); flips the degraded state."""
        self.degraded = problem
        if self.metrics is not None:
            self.metrics.set_degraded(problem is not None)

    def _current(self) -> ServingModel:
        assert self.serving is not None
        return self.serving

    def install(self, bundle: ServingModel) -> None:
        """Swap to a loaded, warmed bundle (called from the reload thread; blocks until done)."""
        assert self._loop is not None, "start() first"
        bundle = self._with_executor(bundle)
        asyncio.run_coroutine_threadsafe(self._install_on_loop(bundle), self._loop).result(SWAP_TIMEOUT_S)

    async def _install_on_loop(self, bundle: ServingModel) -> None:
        # On the loop, between two requests' parse+submit steps: see the module docstring.
        self.serving = bundle
        if self.metrics is not None:
            self.metrics.swapped(bundle.version)

    def webhook(self, body: bytes, headers: Mapping[str, str]) -> WebhookVerdict:
        """Handle an MLflow webhook delivery: an alias move triggers an immediate check."""
        ref = self.reloader.ref if self.reloader is not None else None
        secret = authorize_webhook(body, headers, self.api_token, self.settings.reload_webhook_secret)
        verdict = read_webhook(body, headers, secret, ref)
        if verdict.check and self.reloader is not None:
            self.reloader.trigger()
        return verdict

    async def stop(self) -> None:
        self.ready = False
        if self.reloader is not None:
            await asyncio.to_thread(self.reloader.stop)
        if self.batcher is not None:
            await self.batcher.stop()
        if self.feed is not None:
            await asyncio.to_thread(self.feed.close)
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    def admit(self, path: str, authorization: Callable[[], str | bytes | None]) -> None:
        """Let one more prediction request in, or refuse it: 401 without the predict token, 503 past the limit.

        Called on the event loop only (HTTP routes; gRPC handlers are bridged onto the loop),
        so a plain int needs no lock. Pair every successful admit() with release() in a
        `finally`. HTTP routes admit before reading the body: the limit also bounds the
        memory held by bodies being received (limit x VIGIL_MAX_BODY_BYTES per worker).
        The token is checked first, so an unauthenticated flood takes no in-flight slot;
        `authorization` (the transport's lookup of its Authorization header or metadata) is
        only called when a predict token is set, so open predictions pay one attribute test.
        """
        if self.predict_token is not None and not auth.check_bearer(authorization(), self.predict_token):
            raise Unauthorized(auth.UNAUTHORIZED, auth.refusal(path))
        if self.in_flight >= self._max_in_flight:
            raise Overloaded("too_many_requests", f"{self._max_in_flight} requests are already in flight on this "
                                                  "worker (VIGIL_MAX_CONCURRENT_REQUESTS); retry shortly")
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1

    def parse(self, body: bytes) -> ParsedRequest:
        if not self.ready or self.serving is None:
            raise NotReady("not_ready", "the model is still loading")
        return self.serving.validator.parse_body(body)

    def check(self, payload: Any) -> ParsedRequest:
        if not self.ready or self.serving is None:
            raise NotReady("not_ready", "the model is still loading")
        return self.serving.validator.validate(payload)

    def enqueue(self, request: ParsedRequest, protocol: str = "http") -> tuple[asyncio.Future, ServingModel, list[str]]:
        """Queue one validated request on the shared batcher, on the loop, in the step that validated it.

        Returns the future of its Prediction, the bundle that validated it (the one that
        answers it) and its row ids. Call `rows_answered` once the future is done.
        `protocol` ("http" or "grpc") labels the batch metrics of the batch it joins.
        """
        assert self.batcher is not None and self.serving is not None
        bundle = self.serving  # the one that validated `request` (no await since parse)
        # Ids are fixed before batching so the batch's profile can carry them per row.
        ids = request.ids if request.ids is not None else self.ids.take(request.rows)
        return self.batcher.enqueue(request.inputs, request.rows, ids, bundle, protocol), bundle, ids

    def rows_answered(self, rows: int, bundle: ServingModel) -> None:
        if self.metrics is not None:
            self.metrics.answered(rows, bundle.version)

    async def predict(self, request: ParsedRequest, protocol: str = "http") -> dict[str, Any]:
        """Run one validated request through the shared batcher and build the answer."""
        future, bundle, ids = self.enqueue(request, protocol)
        result = await future
        self.rows_answered(request.rows, bundle)
        answer: dict[str, Any] = {"predictions": result.labels.tolist()}
        if result.probabilities is not None:
            answer["probabilities"] = result.probabilities.tolist()
            answer["classes"] = bundle.schema.classes
        answer["request_ids"] = ids
        answer["model"] = {"name": bundle.name, "version": bundle.version}
        return answer

    def answered(self, started: float, protocol: str) -> None:
        """Record one answered request's time since `started` (perf_counter), by protocol."""
        if self.metrics is not None:
            self.metrics.request_done(time.perf_counter() - started, protocol)

    def refused(self, error: RequestError) -> None:
        """Count a refused request by its reason."""
        if self.metrics is not None:
            self.metrics.refused(error.reason)

    def metadata(self) -> dict[str, Any]:
        """What /metadata reports: model identity, input schema, outputs, parity summary."""
        bundle = self.serving
        if bundle is None:
            raise NotReady("not_ready", "the model is still loading")
        schema = bundle.schema
        return {
            "model": describe(bundle),
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
            "parity": _parity_summary(bundle.model.parity),
            "batching": {
                "max_batch_size": self.settings.max_batch_size,
                "max_latency_ms": self.settings.batch_latency_ms,
                "max_rows_per_request": self.settings.max_rows_per_request,
            },
            "reload": self.reloader.status() if self.reloader is not None else None,
            "degraded": self.degraded is not None,
            "degraded_reason": self.degraded,
        }


def _parity_summary(parity: dict[str, Any] | None) -> dict[str, Any] | None:
    """The headline of the converter's parity report (it may carry large per-row detail)."""
    if parity is None:
        return None
    return {k: v for k, v in parity.items() if not isinstance(v, (list, dict)) or k in ("thresholds", "summary")}
