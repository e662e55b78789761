"""Reading a request body in plain ASGI under a size limit: the one reader every HTTP server here uses.

The service's routes (serving/http/) and the monitor's (monitor/server.py) both call it,
each turning `BodyTooLarge` into its own 413 answer.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

Receive = Callable[[], Awaitable[dict[str, Any]]]


class BodyTooLarge(Exception):
    """The body passed the limit; `declared` is its Content-Length when that already said so."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        size = f"request body of {declared} bytes" if declared is not None else "request body"
        super().__init__(f"{size} exceeds the {limit}-byte limit")
        self.limit, self.declared = limit, declared


class Disconnected(Exception):
    """The client went away before sending its whole body."""


async def read_body(scope: dict[str, Any], receive: Receive, limit: int) -> bytes:
    """The whole body, refused on a Content-Length over `limit` or as soon as `limit` bytes arrived.

    Chunks are collected and joined once: appending to one bytes object copies it on
    every chunk, which is quadratic on a chunked upload.
    """
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise BodyTooLarge(limit, int(value))
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
                raise BodyTooLarge(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
