"""`inference.GRPCInferenceService` (Open Inference Protocol v2) inside each BentoML worker.

grpc's own (sync) server receives RPCs on its threads and each handler runs as a coroutine
on the worker's event loop (`_ThreadBridge`), so ModelInfer queues into the same Batcher as
the HTTP routes and HTTP + gRPC requests share batches. (grpc.aio on the worker loop did
~1,000 req/s at c=64 with 1-row batches; this bridge did ~4,100-4,600 on the same machine.) Every worker
binds the same port with SO_REUSEPORT and the kernel spreads connections over them.

ModelInfer and ModelStreamInfer skip the coroutine: each request goes to the loop as one
callback and comes back from the batcher's future (serving/oip/grpc_calls.py), and a
stream's requests take the same path (serving/oip/grpc_stream.py), so streams, unary
calls and HTTP requests share batches.

The service definition is the one generated and shipped in `tritonclient` (its
`service_pb2*` modules): Triton's clients and perf tools speak it unchanged. RPCs that only
make sense for Triton (repository control, shared memory, tracing...) answer UNIMPLEMENTED.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from serving.errors import NotFound, NotReady, Overloaded, PayloadTooLarge, RequestError, Unauthorized
from serving.oip.grpc_stream import serve_stream
from serving.oip.grpc_calls import Calls, InferCall
from serving.oip.grpc_wire import authorization as _authorization
from serving.oip.model import OipModel

if TYPE_CHECKING:
    from vigil.config import Settings
    from serving.runtime import Runtime

log = logging.getLogger("bentoml.vigil")

IMPLEMENTED = {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata"}
INFER = {"ModelInfer", "ModelStreamInfer"}  # answered through serving/oip/grpc_calls.py, not a coroutine
STOP_GRACE_S = 1.0
GRPC_THREADS = 128


def status_for(error: RequestError) -> grpc.StatusCode:
    """The gRPC status matching the HTTP status the same error gets on the REST routes."""
    if isinstance(error, NotFound):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(error, Unauthorized):
        return grpc.StatusCode.UNAUTHENTICATED
    if isinstance(error, NotReady) or error.reason == "shutting_down":
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(error, (Overloaded, PayloadTooLarge)):
        return grpc.StatusCode.RESOURCE_EXHAUSTED
    return grpc.StatusCode.INVALID_ARGUMENT


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The OIP metadata and health RPCs, answered from the worker's Runtime (inference: _ThreadBridge)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.oip = OipModel(runtime)

    async def _fail(self, context: grpc.aio.ServicerContext, error: RequestError) -> None:
        self.runtime.refused(error)
        # the stable reason code travels as trailing metadata for clients that branch on it
        await context.abort(status_for(error), error.message, trailing_metadata=(("vigil-reason", error.reason),))

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerReadyResponse(ready=self.oip.ready)

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            self.oip.check(request.name, request.version)
        except RequestError as error:
            await self._fail(context, error)
        return pb.ModelReadyResponse(ready=self.oip.ready)

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return pb.ServerMetadataResponse(**self.oip.server_metadata())

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            self.oip.check(request.name, request.version)
            meta = self.oip.model_metadata()
        except RequestError as error:
            await self._fail(context, error)
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["inputs"]],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in meta["outputs"]],
        )


def _unimplemented(method: str) -> Any:
    async def handler(self: InferenceServicer, request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is a Triton-specific RPC; Vigil does not implement it")

    handler.__name__ = method
    return handler


for _method in [m for m in vars(pb_grpc.GRPCInferenceServiceServicer) if not m.startswith("_")]:
    if _method not in IMPLEMENTED | INFER:
        setattr(InferenceServicer, _method, _unimplemented(_method))


class _Abort(Exception):
    """An RPC abort decided on the worker loop, carried back to the gRPC handler thread."""

    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Any = ()) -> None:
        super().__init__(details)
        self.code, self.details, self.trailing_metadata = code, details, tuple(trailing_metadata)


class _LoopContext:
    """The part of a ServicerContext the handlers use, for handlers running on the worker loop."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context  # the handler thread's; only read here, never answered through

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any = ()) -> None:
        raise _Abort(code, details, trailing_metadata)


class _ThreadBridge(pb_grpc.GRPCInferenceServiceServicer):
    """gRPC's threads receive the RPC; the handler runs as a coroutine on the worker loop.

    Why: with grpc.aio every RPC step wakes the worker loop from grpc's poller thread, one
    request at a time, so batches stayed at ~1 row. Here many handler threads block at once
    and their coroutines land on the loop together, so they join the same batch.
    """

    def __init__(self, inner: InferenceServicer, loop: asyncio.AbstractEventLoop) -> None:
        self.inner, self.loop = inner, loop
        self.calls = Calls(inner.runtime, inner.oip, loop)

    def ModelInfer(self, request: Any, context: grpc.ServicerContext) -> Any:
        call = InferCall(request, lambda: _authorization(context), pb.ModelInferResponse())
        self.calls.submit(call)
        call.wait()
        error = call.error
        if error is None:
            return call.response
        if not isinstance(error, RequestError):
            raise error  # a bug: grpcio answers UNKNOWN and logs it
        # the stable reason code travels as trailing metadata for clients that branch on it
        context.set_trailing_metadata((("vigil-reason", error.reason),))
        context.abort(status_for(error), error.message)

    def ModelStreamInfer(self, request_iterator: Any, context: grpc.ServicerContext) -> Any:
        return serve_stream(self.calls, request_iterator, context)


def _bridged(method: str) -> Any:
    def handler(self: _ThreadBridge, request: Any, context: grpc.ServicerContext) -> Any:
        call = getattr(self.inner, method)(request, _LoopContext(context))
        try:
            return asyncio.run_coroutine_threadsafe(call, self.loop).result()
        except _Abort as abort:
            if abort.trailing_metadata:
                context.set_trailing_metadata(abort.trailing_metadata)
            context.abort(abort.code, abort.details)

    handler.__name__ = method
    return handler


for _method in [m for m in vars(pb_grpc.GRPCInferenceServiceServicer) if not m.startswith("_")]:
    if _method not in INFER:
        setattr(_ThreadBridge, _method, _bridged(_method))


async def start_grpc(runtime: Runtime) -> grpc.Server:
    """Start the OIP gRPC server (its own threads) on settings.host:settings.grpc_port."""
    settings = runtime.settings
    limit = settings.grpc_max_message_bytes
    # One thread per RPC in flight: a blocked thread holds no GIL, and more in flight = bigger batches.
    pool = ThreadPoolExecutor(GRPC_THREADS, thread_name_prefix="vigil-grpc")
    server = grpc.server(pool, options=[
        ("grpc.so_reuseport", 1),  # every worker binds the same port; the kernel balances connections
        ("grpc.max_receive_message_length", limit),
        ("grpc.max_send_message_length", limit),
    ], maximum_concurrent_rpcs=settings.max_concurrent_requests + GRPC_THREADS)
    # ^ Runtime.admit decides for every RPC that reaches a handler thread (counted, with a
    # reason); grpcio's own bound only caps RPCs queued behind busy threads, which admit()
    # cannot see, so the worker's backlog of gRPC calls stays bounded too.
    bridge = _ThreadBridge(InferenceServicer(runtime), asyncio.get_running_loop())
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(bridge, server)
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        bound = server.add_secure_port(address, server_credentials(settings)) if settings.tls_enabled \
            else server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises when the address cannot be bound
        raise RuntimeError(f"cannot serve gRPC on {address} (VIGIL_GRPC_PORT): {exc}") from None
    if not bound:
        raise RuntimeError(f"cannot serve gRPC on {address} (VIGIL_GRPC_PORT): the port is in use")
    server.start()
    log.info("vigil: gRPC (Open Inference Protocol v2) on %s%s", address, " (TLS)" if settings.tls_enabled else "")
    return server


def server_credentials(settings: Settings) -> grpc.ServerCredentials:
    """TLS credentials from VIGIL_TLS_CERT_FILE / VIGIL_TLS_KEY_FILE (PEM; checked by config.load)."""
    key, cert = Path(settings.tls_key_file).read_bytes(), Path(settings.tls_cert_file).read_bytes()
    return grpc.ssl_server_credentials([(key, cert)])


async def stop_grpc(server: grpc.Server) -> None:
    """Stop accepting RPCs and give in-flight ones a short grace period."""
    # Off the loop: in-flight handlers need the loop to finish.
    await asyncio.to_thread(server.stop(STOP_GRACE_S).wait)
