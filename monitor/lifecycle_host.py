"""The monitor hosts the lifecycle: a worker thread and Alertmanager's webhook route.

The worker (lifecycle.worker) polls this very monitor over loopback HTTP, the same
way it would poll a remote one, so there is one code path whether it runs here or
as a separate job. `POST /v1/actions/alert` hands Alertmanager payloads to
lifecycle.alerts.handle_alert. monitor/ may import lifecycle; never the reverse.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from vigil.asgi import BodyTooLarge, Disconnected, read_body
from vigil.config import Settings, replace

log = logging.getLogger("vigil.monitor.lifecycle")
# Let uvicorn bind before the first poll: an early poll would only log "unavailable".
_FIRST_POLL_DELAY_S = 1.0


def worker_settings(settings: Settings, port: int) -> Settings:
    """Settings for the hosted worker: it must poll this process, whatever VIGIL_MONITOR_URL says."""
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    # https when this monitor serves TLS: the certificate must then name this host (e.g. 127.0.0.1).
    return replace(settings, monitor_url=f"{settings.scheme}://{host}:{port}")


def start_worker(settings: Settings) -> tuple[threading.Thread, threading.Event]:
    """Start the lifecycle worker thread; set the returned event to stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=_loop, args=(settings, stop), name="vigil-lifecycle", daemon=True)
    thread.start()
    log.info("lifecycle worker polling %s every %.1fs", settings.monitor_url, settings.lifecycle_poll_seconds)
    return thread, stop


def _loop(settings: Settings, stop: threading.Event) -> None:
    from lifecycle.worker import run_actions

    if stop.wait(_FIRST_POLL_DELAY_S):
        return
    while True:
        try:
            for action in run_actions(settings, once=True):
                if action.kind in ("retrain", "rollback") or not action.ok:
                    log.info("lifecycle %s %s: %s", action.kind, action.model, action.detail)
        except Exception:  # a registry hiccup must not kill the worker for the process's lifetime
            log.exception("lifecycle pass failed; retrying at the next poll")
        if stop.wait(settings.lifecycle_poll_seconds):
            return


def alert_endpoint(settings: Settings) -> Any:
    """The Starlette endpoint for POST /v1/actions/alert."""
    import orjson

    from lifecycle.alerts import handle_alert
    from lifecycle.errors import LifecycleError

    async def endpoint(request: Request) -> Response:
        try:
            payload = orjson.loads(await read_body(request.scope, request.receive, settings.monitor_max_body_bytes))
        except BodyTooLarge as exc:
            return JSONResponse({"error": str(exc)}, status_code=413)
        except Disconnected:
            return JSONResponse({"error": "the request body was cut short"}, status_code=400)
        except orjson.JSONDecodeError as exc:
            return JSONResponse({"error": f"body is not JSON: {exc}"}, status_code=400)
        try:
            actions = await run_in_threadpool(handle_alert, settings, payload)
        except LifecycleError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception as exc:  # registry down: 500 so Alertmanager retries
            log.exception("alert handling failed")
            return JSONResponse({"error": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
        return JSONResponse({"actions": [_public(asdict(a)) for a in actions]})

    return endpoint


def _public(action: dict[str, Any]) -> dict[str, Any]:
    """An Action as JSON: evidence may hold numpy numbers or tuples, made plain here."""
    import json

    return json.loads(json.dumps(action, default=str))
