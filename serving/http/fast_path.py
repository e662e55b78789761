"""Answer the hottest route in plain ASGI, ahead of BentoML's own stack.

BentoML's `@bentoml.api` path pays per request for pydantic schema work, signature
inspection and a thread hand-off, and even a mounted Starlette app sits behind BentoML's
context middleware, its router and the mount: under py-spy those layers were about half
of the CPU time per request. `FastPath` is an ASGI middleware that BentoML installs in
its own stack (`Service.add_asgi_middleware`): it hands POST /predict to the handler
service.py defines, guards BentoML's native /v1/predict (token, in-flight count, body
limit: BentoML itself reads bodies with no size limit), refuses headers over 16 KiB with
431 on every route (uvicorn's httptools parser takes any size) and passes the rest on.
"""

from __future__ import annotations

from typing import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from serving.errors import HeadersTooLarge, RequestError, error_headers
from serving.http.messages import Disconnected, read_body, replay, send_json
from serving.runtime import Runtime
from vigil.asgi import headers_too_large
from vigil.auth import asgi_authorization

Handler = Callable[[Scope, Receive, Send], Awaitable[None]]
NATIVE_PREDICT = "/v1/predict"  # BentoML's own API route (service.py)


async def refuse(runtime: Runtime, send: Send, error: RequestError) -> None:
    """Answer a refused request with its JSON error body and status, and count it."""
    runtime.refused(error)
    await send_json(send, error.to_dict(), error.status, error_headers(error))


class FastPath:
    """ASGI middleware: POST /predict goes to `predict`, /v1/predict is guarded, the rest to `app`."""

    def __init__(self, app: ASGIApp, runtime: Runtime, predict: Handler) -> None:
        self.app = app
        self.runtime = runtime
        self.predict = predict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (problem := headers_too_large(scope)) is not None:
            await refuse(self.runtime, send, HeadersTooLarge("headers_too_large", problem))  # every route, BentoML's too
        elif scope["type"] == "http" and scope["path"] == "/predict" and scope["method"] == "POST":
            await self.predict(scope, receive, send)
        elif scope["type"] == "http" and scope["path"] == NATIVE_PREDICT:
            await self.guard(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit and bound BentoML's /v1/predict before BentoML parses and validates it."""
        runtime = self.runtime
        try:
            runtime.admit(NATIVE_PREDICT, lambda: asgi_authorization(scope["headers"]))
        except RequestError as error:
            await refuse(runtime, send, error)
            return
        try:
            try:
                body = await read_body(scope, receive, runtime.settings.max_body_bytes)
            except RequestError as error:
                await refuse(runtime, send, error)
                return
            except Disconnected:
                return
            await self.app(scope, replay(body, receive), send)
        finally:
            runtime.release()
