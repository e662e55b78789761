"""Vigil's model server: one converted ONNX model behind BentoML.

    bentoml serve service:Vigil        (or `vigil serve`)

The model comes from VIGIL_MODEL (a models:/ URI or a folder with model.onnx +
schema.json), or, inside a bento built by `vigil export`, from the BentoML model packed
with it. Every route feeds one adaptive batcher per worker (serving/batcher.py):

    POST /predict          `predict` below, in plain ASGI ahead of BentoML's stack
    POST /v1/predict       BentoML's native API (BentoML's own clients)
    /v2/...  gRPC :8001    Open Inference Protocol v2 (serving/oip/)
    /metadata /metrics     the Starlette app (serving/http/app.py)

Each worker also hands every served batch to its profile agent process, which profiles
it for the monitor and writes the prediction log (serving/producer/).
"""

from __future__ import annotations

import gc
import time
from pathlib import Path
from typing import Any

import bentoml
from starlette.types import Receive, Scope, Send

from serving.errors import RequestError
from serving.http.app import create_app, error_response
from serving.http.fast_path import FastPath, refuse
from serving.http.messages import Disconnected, read_body, send_json
from serving.launch import service_options
from serving.oip.grpc_server import start_grpc, stop_grpc
from serving.runtime import Runtime
from vigil.auth import asgi_authorization
from vigil.config import load

settings = load()
runtime = Runtime(settings)
# Python's default thresholds except gen2 (default 10): see `start` for why.
GC_GEN0, GC_GEN1, GC_GEN2 = 700, 10, 1000
# Set by `vigil export` when it builds a bento: the tag of the packed model.
PACKED_MODEL: str | None = getattr(bentoml.use_arguments(), "vigil_model", None)


async def predict(scope: Scope, receive: Receive, send: Send) -> None:
    """POST /predict: `{"instances": [...], "ids": [...]}` -> predictions, probabilities, ids, version."""
    started = time.perf_counter()
    try:
        runtime.admit("/predict", lambda: asgi_authorization(scope["headers"]))  # token, in-flight limit
    except RequestError as error:
        return await refuse(runtime, send, error)
    try:
        body = await read_body(scope, receive, settings.max_body_bytes)  # 413 past VIGIL_MAX_BODY_BYTES
        answer = await runtime.predict(runtime.parse(body))  # validate, then wait for the batch
    except RequestError as error:
        return await refuse(runtime, send, error)
    except Disconnected:
        return
    finally:
        runtime.release()
    await send_json(send, answer)
    runtime.answered(started, "http")


@bentoml.asgi_app(create_app(runtime), path="/")
@bentoml.service(name="vigil", **service_options(settings))
class Vigil:
    packed = bentoml.models.BentoModel(PACKED_MODEL) if PACKED_MODEL else None
    grpc: Any = None  # the OIP gRPC server of this worker, when VIGIL_GRPC_PORT != 0

    @bentoml.on_startup
    async def start(self) -> None:
        runtime.load(Path(self.packed.path) if self.packed is not None else None)
        await runtime.start()
        if settings.grpc_port:
            # On this worker's loop, so gRPC requests queue into the same batcher as HTTP ones.
            self.grpc = await start_grpc(runtime)
        # Everything allocated so far lives for the whole process: keep it out of the
        # garbage collector's generations so collections stay short under load.
        gc.freeze()
        # A full (gen2) collection walks every live object; under load that is tens of
        # thousands of in-flight request objects, 30-65 ms per pass and ~1.5 passes/s with the
        # default threshold: that pause was the c=64 p99. Serving makes no cyclic garbage
        # that survives to gen2 (measured: 0 collected), so full passes run 100x less often.
        gc.set_threshold(GC_GEN0, GC_GEN1, GC_GEN2)

    @bentoml.on_shutdown
    async def stop(self) -> None:
        if self.grpc is not None:
            await stop_grpc(self.grpc)
        await runtime.stop()

    def __is_ready__(self) -> bool:
        return runtime.ready

    @bentoml.api(route="/v1/predict")
    async def predict(self, instances: list[Any], ids: list[str] | None = None) -> dict[str, Any]:
        """Predict rows (lists in feature order, or objects by feature name)."""
        # FastPath already admitted this request and bounded its body, before BentoML read it.
        try:
            return await runtime.predict(runtime.check({"instances": instances, "ids": ids}))
        except RequestError as error:
            # Same JSON error body and status as /predict (BentoML passes Responses through).
            return error_response(runtime, error)  # type: ignore[return-value]


# POST /predict is answered by `predict` above, ahead of BentoML's router.
Vigil.add_asgi_middleware(FastPath, runtime=runtime, predict=predict)
