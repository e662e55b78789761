"""Reading request bodies and writing JSON answers for every route of the service.

Plain ASGI, so the /predict fast path (no framework) and the Starlette routes share it:
a Starlette route passes `request.scope` and `request.receive`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from serving.errors import PayloadTooLarge
from vigil import asgi
from vigil.asgi import Disconnected

__all__ = ["Disconnected", "json_response", "read_body", "replay", "send_json"]

JSON = "application/json"
_JSON_HEADERS = [(b"content-type", JSON.encode())]


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole body (vigil/asgi.py), a body over `limit` bytes refused as 413 `body_too_large`."""
    try:
        return await asgi.read_body(scope, receive, limit)
    except asgi.BodyTooLarge as exc:
        raise PayloadTooLarge("body_too_large", str(exc)) from None


def replay(body: bytes, receive: Receive) -> Receive:
    """An ASGI `receive` that hands out an already-read body once, then defers to the real one."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> dict:
        return pending.pop() if pending else await receive()

    return replayed


async def send_json(send: Send, payload: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
    """Answer with `payload` as JSON in plain ASGI (orjson; no framework objects)."""
    content = orjson.dumps(payload)
    raw = [*_JSON_HEADERS, (b"content-length", str(len(content)).encode())]
    if headers:
        raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`payload` as a Starlette JSON response (orjson)."""
    return Response(orjson.dumps(payload), status_code=status, media_type=JSON, headers=headers)
