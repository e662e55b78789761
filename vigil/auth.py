"""Bearer tokens: where they come from, how clients send them, how servers check them.

Two tokens, each from an environment variable or a mounted secret file (never both):

* the API token (VIGIL_API_TOKEN / VIGIL_API_TOKEN_FILE) guards the monitor's ingest,
  labels, status, drift, report and alert routes and the service's admin webhook;
* the predict token (VIGIL_PREDICT_TOKEN / VIGIL_PREDICT_TOKEN_FILE), when set, guards the
  service's prediction routes. Unset = predictions are open.

Requests carry `Authorization: Bearer <token>` (gRPC: metadata `authorization`). Every
refusal answers 401 with the reason code `unauthorized`, which is also the label the
refusal counters use. Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Iterable

import orjson

if TYPE_CHECKING:
    from vigil.config import Settings

UNAUTHORIZED = "unauthorized"  # reason code in 401 bodies and label of the refusal counters
CHALLENGE = {"WWW-Authenticate": "Bearer"}
_SCHEME = "bearer"  # compared case-insensitively, as RFC 7235 has it


def _check_token(name: str, token: str) -> str:
    # It travels in an HTTP header: anything but visible ASCII would be mangled or refused there.
    if not token.isascii() or not token.isprintable() or " " in token:
        raise ValueError(f"{name}: the token must be printable ASCII without spaces (it is sent in an HTTP header)")
    return token


def resolve_token(name: str, value: str, file: str) -> str:
    """The token named `name` from its value or its `<name>_FILE` path; "" when neither is set.

    Trailing whitespace (the newline of `echo secret > file`) is stripped. Both set, a file
    that cannot be read, or an empty file is a ValueError naming the variable.
    """
    value, file = value.strip(), file.strip()
    if value and file:
        raise ValueError(f"set either {name} or {name}_FILE, not both")
    if value:
        return _check_token(name, value)
    if not file:
        return ""
    try:
        token = Path(file).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ValueError(f"{name}_FILE={file}: cannot read the token file ({reason})") from None
    if not token:
        # An empty mounted secret must not silently turn access control off.
        raise ValueError(f"{name}_FILE={file}: the token file is empty")
    return _check_token(f"{name}_FILE={file}", token)


def api_token(settings: Settings) -> str:
    """The API (internal/admin) token, "" when none is configured."""
    return resolve_token("VIGIL_API_TOKEN", settings.api_token, settings.api_token_file)


def predict_token(settings: Settings) -> str:
    """The prediction token, "" when predictions are open."""
    return resolve_token("VIGIL_PREDICT_TOKEN", settings.predict_token, settings.predict_token_file)


def bearer(token: str) -> dict[str, str]:
    """Request headers carrying `token` ({} without one).

    The name is lower-case so the same dict also works as gRPC metadata (tritonclient's
    `headers=`), where upper-case keys are invalid; HTTP header names ignore case.
    """
    return {"authorization": f"Bearer {token}"} if token else {}


def auth_headers(settings: Settings) -> dict[str, str]:
    """Headers for requests to the monitor and the service's admin routes (API token)."""
    return bearer(api_token(settings))


def predict_headers(settings: Settings) -> dict[str, str]:
    """Headers for prediction requests to the service (predict token, when one is set)."""
    return bearer(predict_token(settings))


def check_bearer(header: str | bytes | None, token: bytes) -> bool:
    """True when an Authorization header value is `Bearer <token>` (constant-time compare)."""
    if not header:
        return False
    raw = header.encode("latin-1", "replace") if isinstance(header, str) else header
    scheme, _, given = raw.strip().partition(b" ")
    if scheme.lower() != _SCHEME.encode():
        return False
    return hmac.compare_digest(given.strip(), token)


def asgi_authorization(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The Authorization header from raw ASGI headers (names arrive lower-cased)."""
    for name, value in headers:
        if name == b"authorization":
            return value
    return None


def refusal(path: str) -> str:
    """The 401 message for `path`."""
    return f"missing or invalid bearer token for {path}"


def unauthorized_body(path: str) -> dict[str, dict[str, str]]:
    """The JSON body of a 401 (the service's error shape)."""
    return {"error": {"reason": UNAUTHORIZED, "message": refusal(path)}}


ASGIApp = Callable[..., Awaitable[None]]


class BearerGate:
    """ASGI middleware: every HTTP request outside `open_paths` needs `Bearer <token>`.

    Installed only when a token is configured, so an open deployment pays nothing.
    `refused` is called once per 401 (the caller's counter).
    """

    def __init__(self, app: ASGIApp, token: str, open_paths: Iterable[str], refused: Callable[[], None]) -> None:
        self.app = app
        self.token = token.encode()
        self.open_paths = frozenset(open_paths)
        self.refused = refused

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if (scope["type"] != "http" or scope["path"] in self.open_paths
                or check_bearer(asgi_authorization(scope["headers"]), self.token)):
            await self.app(scope, receive, send)
            return
        self.refused()
        body = orjson.dumps(unauthorized_body(scope["path"]))
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]})
        await send({"type": "http.response.body", "body": body})
