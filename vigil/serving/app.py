"""The fast HTTP routes, as a plain Starlette app mounted into the BentoML service.

BentoML's own `@bentoml.api` path pays per request for pydantic schema work, signature
inspection and a thread hand-off (~520 req/s here); these routes read bytes, validate,
queue into the shared batcher and write orjson — about ten times faster.

The hottest route, POST /predict, goes further: `FastPath` is an ASGI middleware that
BentoML installs in its own stack (`Service.add_asgi_middleware`) and answers that route
in plain ASGI, before BentoML's context middleware, its router, the mount and this
Starlette app. Under py-spy those layers were about half of the CPU time per request.
"""

from __future__ import annotations

import time

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from vigil.auth import asgi_authorization
from vigil.serving.errors import PayloadTooLarge, RequestError, error_headers
from vigil.serving.metrics import render
from vigil.serving.runtime import Runtime

JSON = "application/json"


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)


def error_response(runtime: Runtime, error: RequestError) -> Response:
    runtime.refused(error)
    return _json(error.to_dict(), error.status, error_headers(error))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing early (413) when it is larger than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge("body_too_large", f"request body of {declared} bytes exceeds the {limit}-byte limit")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge("body_too_large", f"request body exceeds the {limit}-byte limit")
    return body


class _Disconnected(Exception):
    """The client went away before sending its whole body."""


async def _read_asgi_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The body from raw ASGI messages, refusing early (413) past `limit` bytes."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge("body_too_large", f"request body of {int(value)} bytes exceeds the {limit}-byte limit")
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        body += message.get("body", b"")
        if len(body) > limit:
            raise PayloadTooLarge("body_too_large", f"request body exceeds the {limit}-byte limit")
        if not message.get("more_body", False):
            return body


def _replay(body: bytes, receive: Receive) -> Receive:
    """An ASGI `receive` that hands out an already-read body once, then defers to the real one."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> dict:
        return pending.pop() if pending else await receive()

    return replay


_JSON_HEADERS = [(b"content-type", JSON.encode())]


async def _send_json(send: Send, payload: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
    content = orjson.dumps(payload)
    raw = [*_JSON_HEADERS, (b"content-length", str(len(content)).encode())]
    if headers:
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


NATIVE_PREDICT = "/v1/predict"  # BentoML's own API route (service.py)


class FastPath:
    """ASGI middleware answering POST /predict itself; everything else goes on to `app`.

    Same behaviour as the Starlette route in `create_app` (which stays as the fallback
    when the service is mounted without this middleware), minus the framework layers.
    It also guards BentoML's /v1/predict (token, in-flight count, body limit), so that
    route refuses before BentoML parses and validates the body, like every other
    prediction route.
    """

    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime
        self.limit = runtime.settings.max_body_bytes
        self.token = runtime.predict_token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/predict" and scope["method"] == "POST":
            await self.predict(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == NATIVE_PREDICT:
            await self.guard(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        try:
            if self.token is not None:
                runtime.authorize(asgi_authorization(scope["headers"]), NATIVE_PREDICT)
            runtime.admit()
        except RequestError as error:
            await self.refuse(send, error)
            return
        try:
            try:
                # BentoML reads bodies without a size limit: read it here under ours.
                body = await _read_asgi_body(scope, receive, self.limit)
            except RequestError as error:
                await self.refuse(send, error)
                return
            except _Disconnected:
                return
            await self.app(scope, _replay(body, receive), send)
        finally:
            runtime.release()

    async def predict(self, scope: Scope, receive: Receive, send: Send) -> None:
        runtime = self.runtime
        start = time.perf_counter()
        try:
            if self.token is not None:
                runtime.authorize(asgi_authorization(scope["headers"]), "/predict")
            runtime.admit()
        except RequestError as error:
            await self.refuse(send, error)
            return
        try:
            parsed = runtime.parse(await _read_asgi_body(scope, receive, self.limit))
            answer = await runtime.predict(parsed)
        except RequestError as error:
            await self.refuse(send, error)
            return
        except _Disconnected:
            return
        finally:
            runtime.release()
        await _send_json(send, answer)
        assert runtime.metrics is not None
        runtime.metrics.request_done(time.perf_counter() - start)

    async def refuse(self, send: Send, error: RequestError) -> None:
        self.runtime.refused(error)
        await _send_json(send, error.to_dict(), error.status, error_headers(error))


def create_app(runtime: Runtime) -> Starlette:
    """Routes: POST /predict, GET /metadata, GET /metrics, OIP v2 /v2/... (livez/readyz come from BentoML)."""
    limit = runtime.settings.max_body_bytes

    async def predict(request: Request) -> Response:
        start = time.perf_counter()
        try:
            if runtime.predict_token is not None:
                runtime.authorize(request.headers.get("authorization"), "/predict")
            runtime.admit()
        except RequestError as error:
            return error_response(runtime, error)
        try:
            parsed = runtime.parse(await _read_body(request, limit))
            answer = await runtime.predict(parsed)
        except RequestError as error:
            return error_response(runtime, error)
        finally:
            runtime.release()
        response = _json(answer)
        assert runtime.metrics is not None
        runtime.metrics.request_done(time.perf_counter() - start)
        return response

    async def metadata(_: Request) -> Response:
        try:
            return _json(runtime.metadata())
        except RequestError as error:
            return error_response(runtime, error)

    async def metrics(_: Request) -> Response:
        content, media_type = render()
        return Response(content, media_type=media_type)

    async def mlflow_webhook(request: Request) -> Response:
        # An MLflow 3 webhook (model_version_alias.created) makes this worker check its
        # alias now; the others catch up on their next poll (see vigil/serving/reload.py).
        try:
            verdict = runtime.webhook(await _read_body(request, limit), request.headers)
        except RequestError as error:
            return error_response(runtime, error)
        return _json(verdict.to_dict(), 202 if verdict.check else 200)

    async def openapi(_: Request) -> Response:
        from vigil.serving.openapi import service_openapi

        return _json(service_openapi())

    # imported here: oip_rest builds on this module's helpers
    from vigil.serving.oip_rest import oip_routes

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/metadata", metadata, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/v1/webhooks/mlflow", mlflow_webhook, methods=["POST"]),
            Route("/openapi.json", openapi, methods=["GET"]),  # hand-kept spec: vigil/serving/openapi.py
            *oip_routes(runtime),  # Open Inference Protocol v2 REST: /v2/...
        ]
    )
