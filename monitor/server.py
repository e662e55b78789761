"""The monitor's HTTP server: Starlette on uvicorn (not BentoML), port 3100 by default.

Routes: POST /v1/profiles (the producer stream, monitor/CONTRACT.md), POST /v1/labels,
GET /v1/status, GET /v1/drift, GET /metrics, GET /report, GET /healthz, and the lifecycle's
POST /v1/actions/alert (Alertmanager webhook; the worker thread runs too, see
monitor/lifecycle_host.py). With VIGIL_API_TOKEN(_FILE) set, all but /healthz, /metrics and
/openapi.json need `Authorization: Bearer <token>` (vigil/auth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator, Callable

import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from monitor.labels import JOIN_EVERY_S
from monitor.state import Monitor
from monitor.wire import WireError
from vigil.asgi import BodyTooLarge, Disconnected, HeaderLimit, read_body
from vigil.auth import UNAUTHORIZED, BearerGate, api_token
from vigil.config import Settings, apply_to_process
from vigil.process_stats import LabelledProcessCollector

log = logging.getLogger("vigil.monitor")
_EXPIRE_EVERY_S = 60.0
# Open without the API token: Prometheus scrapes and k8s probes carry no credentials.
OPEN_PATHS = ("/healthz", "/metrics", "/openapi.json")


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


async def _body(request: Request, limit: int) -> bytes:
    """The request body (vigil/asgi.py), refused with 413 as soon as it passes `limit` bytes."""
    try:
        return await read_body(request.scope, request.receive, limit)
    except BodyTooLarge as exc:
        raise WireError(413, "too_large", str(exc)) from None


def create_app(settings: Settings, monitor: Monitor | None = None, port: int | None = None) -> Starlette:
    """The ASGI app around a `Monitor` (built from `settings` unless given).

    With `port` (the one this process listens on) and VIGIL_LIFECYCLE_WORKER on, the
    lifecycle worker thread runs for the app's lifetime, polling this monitor.
    """
    from prometheus_client import CollectorRegistry, generate_latest

    from monitor.lifecycle_host import alert_endpoint, start_worker, worker_settings
    from monitor.metrics import MonitorCollector
    from monitor.openapi import monitor_openapi
    from monitor.report import render_report

    mon = monitor or Monitor(settings)
    lifecycle = worker_settings(settings, port) if port is not None else settings
    registry = CollectorRegistry()
    registry.register(MonitorCollector(mon))
    registry.register(LabelledProcessCollector("monitor"))  # process_*{role="monitor"}

    def _post(handler: Callable[[bytes], dict[str, Any]]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                body = await _body(request, settings.monitor_max_body_bytes)
                return _JSON(await run_in_threadpool(handler, body))
            except Disconnected:  # the sender went away mid-body: a producer resends
                return Response(status_code=400)
            except WireError as exc:
                if exc.reason == "too_large":
                    mon.rejected[exc.reason] += 1
                return _JSON({"error": str(exc)}, status_code=exc.status)
            except Exception as exc:  # a bug or a full disk: 500 so producers retry later
                log.exception("request failed")
                return _JSON({"error": f"internal error: {type(exc).__name__}"}, status_code=500)

        return endpoint

    async def status(request: Request) -> Response:
        return _JSON(await run_in_threadpool(mon.status))

    async def drift(request: Request) -> Response:
        q = request.query_params
        raw = q.get("windows", "20")
        if not raw.isdigit() or not 1 <= int(raw) <= 1000:
            return _JSON({"error": "windows must be an integer between 1 and 1000"}, status_code=400)
        return _JSON(await run_in_threadpool(mon.drift, q.get("model"), q.get("version"), int(raw)))

    async def metrics(request: Request) -> Response:
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def report(request: Request) -> Response:
        return HTMLResponse(await run_in_threadpool(render_report, mon, request.query_params.get("model")))

    async def healthz(request: Request) -> Response:
        return _JSON({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async def every(seconds: float, job: Callable[[], Any], what: str) -> None:
            while True:
                try:
                    await run_in_threadpool(job)
                except Exception:  # a full disk, a damaged file: logged, retried on the next turn
                    log.exception("%s failed", what)
                await asyncio.sleep(seconds)

        tasks = [asyncio.create_task(every(_EXPIRE_EVERY_S, mon.expire, "retention")),
                 asyncio.create_task(every(JOIN_EVERY_S, mon.join_labels, "label join"))]
        worker = start_worker(lifecycle) if port is not None and settings.lifecycle_worker else None
        yield
        for task in tasks:
            task.cancel()
        if worker is not None:
            worker[1].set()
            await run_in_threadpool(worker[0].join, 5.0)
        mon.store.close()

    routes = [
        Route("/v1/profiles", _post(mon.ingest), methods=["POST"]),
        Route("/v1/labels", _post(mon.post_labels), methods=["POST"]),
        Route("/v1/status", status),
        Route("/v1/drift", drift),
        Route("/metrics", metrics),
        Route("/report", report),
        Route("/healthz", healthz),
        Route("/openapi.json", lambda _: _JSON(monitor_openapi())),  # hand-kept: monitor/openapi.py
        Route("/v1/actions/alert", alert_endpoint(lifecycle), methods=["POST"]),
    ]
    def too_large_headers() -> None:
        mon.rejected["headers_too_large"] += 1

    # Outermost: headers over 16 KiB get 431 before the token check or any route.
    limit = [Middleware(HeaderLimit, refused=too_large_headers)]
    return Starlette(routes=routes, lifespan=lifespan, middleware=limit + _gate(settings, mon))


def _gate(settings: Settings, mon: Monitor) -> list[Middleware]:
    """With VIGIL_API_TOKEN(_FILE) set, every route but OPEN_PATHS needs it; 401s are counted."""
    token = api_token(settings)
    if not token:
        return []

    def refused() -> None:
        mon.rejected[UNAUTHORIZED] += 1

    return [Middleware(BearerGate, token=token, open_paths=OPEN_PATHS, refused=refused)]


def run_monitor(settings: Settings, port: int | None = None) -> None:
    """Serve the monitor until interrupted (`vigil monitor [--port N]`)."""
    import uvicorn

    apply_to_process(settings)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    port = settings.monitor_port if port is None else port
    app = create_app(settings, port=port)
    log.info("monitor listening on %s://%s:%d (state in %s)", settings.scheme, settings.host, port, settings.monitor_home)
    # TLS with the service's certificate and key (VIGIL_TLS_CERT_FILE / VIGIL_TLS_KEY_FILE), when set.
    tls = {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file} if settings.tls_enabled else {}
    uvicorn.run(app, host=settings.host, port=port, log_level="warning", access_log=False, **tls)
