"""The Starlette app mounted into the BentoML service: every HTTP route but POST /predict.

BentoML's own `@bentoml.api` path pays per request for pydantic schema work, signature
inspection and a thread hand-off (~520 req/s here); these routes read bytes, validate,
queue into the shared batcher and write orjson. POST /predict itself is answered one
layer further out (service.py, through serving/http/fast_path.py).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.errors import RequestError, error_headers
from serving.http.messages import json_response, read_body
from serving.http.openapi import service_openapi
from serving.metrics import render
from serving.oip.rest import oip_routes
from serving.runtime import Runtime


def error_response(runtime: Runtime, error: RequestError) -> Response:
    """A refused request's JSON error body and status (counted by reason)."""
    runtime.refused(error)
    return json_response(error.to_dict(), error.status, error_headers(error))


def create_app(runtime: Runtime) -> Starlette:
    """GET /metadata, GET /metrics, the MLflow webhook, /openapi.json and OIP v2 REST (/v2/...).

    /livez and /readyz come from BentoML; POST /predict is the fast path's.
    """
    limit = runtime.settings.max_body_bytes

    async def metadata(_: Request) -> Response:
        try:
            return json_response(runtime.metadata())
        except RequestError as error:
            return error_response(runtime, error)

    async def metrics(_: Request) -> Response:
        content, media_type = render()
        return Response(content, media_type=media_type)

    async def mlflow_webhook(request: Request) -> Response:
        # An MLflow 3 webhook (model_version_alias.created) makes this worker check its
        # alias now; the others catch up on their next poll (serving/swap/reload.py).
        try:
            verdict = runtime.webhook(await read_body(request.scope, request.receive, limit), request.headers)
        except RequestError as error:
            return error_response(runtime, error)
        return json_response(verdict.to_dict(), 202 if verdict.check else 200)

    async def openapi(_: Request) -> Response:
        return json_response(service_openapi())

    return Starlette(
        routes=[
            Route("/metadata", metadata, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/v1/webhooks/mlflow", mlflow_webhook, methods=["POST"]),
            Route("/openapi.json", openapi, methods=["GET"]),  # hand-kept spec: serving/http/openapi.py
            *oip_routes(runtime),  # Open Inference Protocol v2 REST: /v2/...
        ]
    )
