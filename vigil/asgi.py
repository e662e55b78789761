"""Reading a request in plain ASGI under size limits: the one reader every HTTP server here uses.

The service's routes (serving/http/) and the monitor's (monitor/server.py) both call it,
each turning `BodyTooLarge` into its own 413 answer and `header_bytes` over
MAX_HEADER_BYTES into a 431.

A body refused as too large is still read and dropped, up to LINGER_BYTES and for at most
LINGER_SECONDS, before the refusal is sent (what nginx's lingering close does): a client
that writes its whole body before reading (Python's urllib, many SDKs) would otherwise
find the connection reset under its feet and never see the 413 and its reason.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

Receive = Callable[[], Awaitable[dict[str, Any]]]

# Request line + headers: 16 KiB like nginx's large_client_header_buffers (4 x 8 KiB) and
# h11's max_incomplete_event_size; uvicorn's httptools parser has no limit of its own.
MAX_HEADER_BYTES = 16 * 1024
LINGER_BYTES = 16 << 20
LINGER_SECONDS = 5.0


class BodyTooLarge(Exception):
    """The body passed the limit; `declared` is its Content-Length when that already said so."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        size = f"request body of {declared} bytes" if declared is not None else "request body"
        super().__init__(f"{size} exceeds the {limit}-byte limit")
        self.limit, self.declared = limit, declared


class Disconnected(Exception):
    """The client went away before sending its whole body."""


def header_bytes(scope: dict[str, Any]) -> int:
    """Size of the request line and headers as they came on the wire (near enough: name: value CRLF)."""
    line = len(scope.get("raw_path") or scope.get("path", "").encode()) + len(scope.get("query_string", b"")) + 16
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def headers_too_large(scope: dict[str, Any]) -> str | None:
    """The 431 message when the request's headers pass MAX_HEADER_BYTES, else None."""
    size = header_bytes(scope)
    if size <= MAX_HEADER_BYTES:
        return None
    return f"request headers of {size} bytes exceed the {MAX_HEADER_BYTES}-byte limit"


async def read_body(scope: dict[str, Any], receive: Receive, limit: int) -> bytes:
    """The whole body, refused on a Content-Length over `limit` or as soon as `limit` bytes arrived.

    Chunks are collected and joined once: appending to one bytes object copies it on
    every chunk, which is quadratic on a chunked upload.
    """
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            declared = int(value)
            if declared <= LINGER_BYTES:  # beyond that, a reset is cheaper than reading it
                await discard(receive, declared)
            raise BodyTooLarge(limit, declared)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                if message.get("more_body", False):
                    await discard(receive, LINGER_BYTES - size)
                raise BodyTooLarge(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def discard(receive: Receive, budget: int) -> int:
    """Read and drop up to `budget` bytes of the rest of the body (LINGER_SECONDS at most); returns them."""
    deadline = time.monotonic() + LINGER_SECONDS
    dropped = 0
    while dropped < budget:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            message = await asyncio.wait_for(receive(), left)
        except asyncio.TimeoutError:
            break
        if message["type"] == "http.disconnect":
            break
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return dropped


class HeaderLimit:
    """ASGI middleware: 431 with a JSON reason for headers over MAX_HEADER_BYTES, before any route runs."""

    def __init__(self, app: Callable[..., Awaitable[None]], refused: Callable[[], None] | None = None) -> None:
        self.app, self.refused = app, refused

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Callable[..., Awaitable[None]]) -> None:
        problem = headers_too_large(scope) if scope["type"] == "http" else None
        if problem is None:
            await self.app(scope, receive, send)
            return
        if self.refused is not None:
            self.refused()
        body = ('{"error": "%s"}' % problem).encode()
        await send({"type": "http.response.start", "status": 431, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
