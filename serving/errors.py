"""Errors a client caused, carried to the HTTP layer as a status code + JSON body."""

from __future__ import annotations


class RequestError(Exception):
    """A request the service refuses; `reason` is a short stable code for clients and metrics."""

    status = 400

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def to_dict(self) -> dict[str, dict[str, str]]:
        return {"error": {"reason": self.reason, "message": self.message}}


class PayloadTooLarge(RequestError):
    status = 413


class HeadersTooLarge(RequestError):
    """Request line + headers over vigil/asgi.py's MAX_HEADER_BYTES."""

    status = 431


class Overloaded(RequestError):
    """The batch queue is full: the client should retry shortly (503 + Retry-After)."""

    status = 503


class NotReady(RequestError):
    status = 503


class NotFound(RequestError):
    """The request names a model (or version) this server does not serve."""

    status = 404


class Unauthorized(RequestError):
    """No valid bearer token for a route that needs one (vigil/auth.py): 401 + WWW-Authenticate."""

    status = 401


def error_headers(error: RequestError) -> dict[str, str] | None:
    """Extra response headers a refusal carries: when to retry (503), how to authenticate (401)."""
    if error.status == 503:
        return {"Retry-After": "1"}
    if error.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    return None
