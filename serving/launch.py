"""How the service is configured and started: BentoML service options and `bentoml serve` argv."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from vigil.config import Settings, process_env, to_env

SERVICE_CLASS = "Vigil"
# Routes served by Vigil's own Starlette app: BentoML must not trace them (an
# OpenTelemetry span per request was ~20 % of the CPU time per prediction).
FAST_ROUTES = ["/predict", "/metadata", "/metrics", "/v2/"]
# BentoML's TimeoutMiddleware sits outside every route (FastPath included) and schedules a
# loop.call_later timer per request that holds a future and a context copy until it fires,
# so the live heap is ~rate x timeout timers: at ~10k req/s, 10 s of them grew the worker
# by ~40 MB (+11.7 % RSS from 50k to 200k requests, flat after that: a plateau, not a
# leak); 3 s reaches its plateau before 20k requests (+1.2-1.6 %). What 3 s kills: the
# longest legit request (1,024 rows on the 300-tree forest, ~9 ms, behind a full 4,096-row
# queue, ~35 ms) stays under 0.1 s and the SLO p99 is 25 ms: only a hung request gets a 504.
REQUEST_TIMEOUT_S = 3


def service_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for `@bentoml.service`, so a built bento carries them too."""
    options = {
        "workers": settings.workers,
        # No `max_concurrency` here: BentoML's answers 429 without Retry-After, is not counted
        # in our metrics and does not see gRPC (our own grpcio server). Vigil counts requests
        # in flight itself (VIGIL_MAX_CONCURRENT_REQUESTS, see runtime.py `admit`).
        "traffic": {"timeout": REQUEST_TIMEOUT_S},
        # BentoML's metrics middleware costs per request and its /metrics would shadow
        # ours: Vigil serves /metrics itself (summed across workers, see metrics.py).
        "metrics": {"enabled": False},
        "logging": {"access": {"enabled": False}},
        "tracing": {"excluded_urls": FAST_ROUTES},
        "http": {"host": settings.host, "port": settings.port},
    }
    if settings.tls_enabled:
        # BentoML's service-level `ssl` config (read when `bentoml serve` injects the service
        # config) becomes uvicorn's --ssl-certfile/--ssl-keyfile in every worker.
        options["ssl"] = {"enabled": True, "certfile": settings.tls_cert_file, "keyfile": settings.tls_key_file}
    return options


def serve_command(
    settings: Settings, port: int | None = None, workers: int | None = None
) -> tuple[list[str], dict[str, str]]:
    """argv + env for `bentoml serve service:Vigil`, to run with cwd = the project root.

    Port and worker count travel as VIGIL_* variables because service.py reads its
    BentoML options from Settings (that way a built bento honours them as well).
    """
    env = process_env(settings)
    env.update(to_env(settings))
    env["VIGIL_PORT"] = str(port or settings.port)
    env["VIGIL_WORKERS"] = str(workers or settings.workers)
    env.setdefault("PYTHONUNBUFFERED", "1")
    argv = [
        str(Path(sys.executable).with_name("bentoml")),
        "serve",
        f"service:{SERVICE_CLASS}",
        "--host",
        settings.host,
        "--port",
        str(port or settings.port),
    ]
    return argv, env
