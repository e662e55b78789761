"""Vigil's model server: one converted ONNX model behind BentoML.

    bentoml serve service:Vigil        (or `vigil serve`)

The model comes from VIGIL_MODEL (a models:/ URI or a folder with model.onnx +
schema.json), or — inside a bento built by `vigil export` — from the BentoML model packed
with it. The fast routes (/predict, /metadata, /metrics) are a Starlette app mounted into
the service; /v1/predict is a native BentoML API for BentoML's own clients. Both feed the
same per-worker batcher. The machinery lives in vigil/serving/.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import bentoml

from vigil.config import load
from vigil.serving.app import FastPath, create_app, error_response
from vigil.serving.errors import RequestError
from vigil.serving.launch import service_options
from vigil.serving.runtime import Runtime

settings = load()
runtime = Runtime(settings)
# Python's default thresholds except gen2 (default 10): see start() for the measurement.
GC_GEN0, GC_GEN1, GC_GEN2 = 700, 10, 1000
# Set by `vigil export` when it builds a bento: the tag of the packed model.
PACKED_MODEL: str | None = getattr(bentoml.use_arguments(), "vigil_model", None)


@bentoml.asgi_app(create_app(runtime), path="/")
@bentoml.service(name="vigil", **service_options(settings))
class Vigil:
    packed = bentoml.models.BentoModel(PACKED_MODEL) if PACKED_MODEL else None

    @bentoml.on_startup
    async def start(self) -> None:
        runtime.load(Path(self.packed.path) if self.packed is not None else None)
        await runtime.start()
        # Everything allocated so far lives for the whole process: keep it out of the
        # garbage collector's generations so collections stay short under load.
        gc.freeze()
        # A full (gen2) collection walks every live object; under load that is tens of
        # thousands of in-flight request objects, 30-65 ms per pass and ~1.5 passes/s with the
        # default threshold: that pause *was* the c=64 p99. Serving makes no cyclic garbage
        # that survives to gen2 (measured: 0 collected), so run full passes 100x less often.
        gc.set_threshold(GC_GEN0, GC_GEN1, GC_GEN2)

    @bentoml.on_shutdown
    async def stop(self) -> None:
        await runtime.stop()

    def __is_ready__(self) -> bool:
        return runtime.ready

    @bentoml.api(route="/v1/predict")
    async def predict(self, instances: list[Any], ids: list[str] | None = None) -> dict[str, Any]:
        """Predict rows (lists in feature order, or objects by feature name)."""
        # FastPath (app.py) already admitted this request and bounded its body, before BentoML read it.
        try:
            return await runtime.predict(runtime.check({"instances": instances, "ids": ids}))
        except RequestError as error:
            # Same JSON error body and status as /predict (BentoML passes Responses through).
            return error_response(runtime, error)  # type: ignore[return-value]


# POST /predict is answered by this middleware ahead of BentoML's router (see app.py).
Vigil.add_asgi_middleware(FastPath, runtime=runtime)
