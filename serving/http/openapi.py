"""A hand-maintained OpenAPI 3.0 description of Vigil's own HTTP routes (GET /openapi.json).

BentoML documents only its native APIs (/docs.json: /v1/predict, the probes); the fast
Starlette routes (/predict, /metadata, /metrics, the webhook, OIP v2 /v2/...) are plain
ASGI, so they are described here by hand. It is what `tests/test_fuzz.py` feeds to
schemathesis, so keep it in step with serving/http/app.py, service.py (/predict) and serving/oip/rest.py.
"""

from __future__ import annotations

from typing import Any

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["reason", "message"],
            "properties": {"reason": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
# OIP v2 errors are Triton-shaped: {"error": message, "reason": code}
_OIP_ERROR = {"type": "object", "required": ["error"],
              "properties": {"error": {"type": "string"}, "reason": {"type": "string"}}}
_SCALAR = {"oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
_ROW = {"oneOf": [{"type": "array", "items": _SCALAR}, {"type": "object", "additionalProperties": _SCALAR}]}
_PREDICT = {
    "type": "object",
    "required": ["instances"],
    "properties": {
        "instances": {"type": "array", "items": _ROW, "minItems": 1},
        "ids": {"type": "array", "items": {"type": "string"}},
    },
}
_OIP_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                  "FP16", "FP32", "FP64", "BYTES"]
_OIP_INFER = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                    "datatype": {"type": "string", "enum": _OIP_DATATYPES},
                    "data": {"type": "array"},
                    "parameters": {"type": "object"},
                },
            },
        },
        "outputs": {
            "type": "array",
            "items": {"type": "object", "required": ["name"],
                      "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}}},
        },
    },
}
_WEBHOOK = {
    "type": "object",
    "properties": {"entity": {"type": "string"}, "action": {"type": "string"}, "data": {"type": "object"}},
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


# What each refusal means; `reason` in the body names the exact cause (README "Limits").
_REFUSALS = {
    401: "missing or invalid bearer token (reason unauthorized; the webhook: or MLflow signature), "
         "only when the route's token is configured",
    413: "body larger than VIGIL_MAX_BODY_BYTES (reason body_too_large)",
    503: "retry after Retry-After seconds: not ready, batch queue full (reason overloaded) or "
         "VIGIL_MAX_CONCURRENT_REQUESTS already in flight on the worker (reason too_many_requests)",
}
_RETRY_AFTER = {"Retry-After": {"description": "seconds to wait before retrying", "schema": {"type": "integer"}}}
_CHALLENGE = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}
# Bearer tokens (vigil/auth.py). `{}` = also allowed without: a token is needed only when configured.
_SECURITY_SCHEMES = {
    "predictToken": {"type": "http", "scheme": "bearer",
                     "description": "VIGIL_PREDICT_TOKEN(_FILE); without it predictions are open"},
    "apiToken": {"type": "http", "scheme": "bearer",
                 "description": "VIGIL_API_TOKEN(_FILE): admin routes (an MLflow webhook may sign instead)"},
}
_PREDICT_AUTH = [{"predictToken": []}, {}]
_ADMIN_AUTH = [{"apiToken": []}, {}]


def _responses(ok: str, *errors: int, media: str = "application/json", error: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": ok, "content": {media: {"schema": {}}}}}
    for status in errors:
        out[str(status)] = {"description": _REFUSALS.get(status, "refused"),
                            "content": {"application/json": {"schema": error or _ERROR}}}
        if status == 503:
            out[str(status)]["headers"] = _RETRY_AFTER
        if status == 401:
            out[str(status)]["headers"] = _CHALLENGE
    return out


def _oip_model_paths(prefix: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    def answers(ok: str, *errors: int) -> dict[str, Any]:
        return _responses(ok, *errors, error=_OIP_ERROR)

    return {
        prefix: {"get": {"parameters": params, "responses": answers("model metadata", 404)}},
        f"{prefix}/ready": {"get": {"parameters": params, "responses": answers("model readiness", 404, 503)}},
        f"{prefix}/infer": {"post": {"parameters": params, "requestBody": _json_body(_OIP_INFER),
                                     "security": _PREDICT_AUTH,
                                     "responses": answers("inference result", 400, 401, 404, 413, 503)}},
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def service_openapi() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the routes Vigil serves itself."""
    name, version = _path_param("name"), _path_param("version")
    paths: dict[str, Any] = {
        "/predict": {"post": {"requestBody": _json_body(_PREDICT), "security": _PREDICT_AUTH,
                              "responses": _responses("predictions", 400, 401, 413, 503)}},
        "/metadata": {"get": {"responses": _responses("model metadata", 503)}},
        "/metrics": {"get": {"responses": _responses("Prometheus metrics", media="text/plain")}},
        "/v1/webhooks/mlflow": {"post": {"requestBody": _json_body(_WEBHOOK), "security": _ADMIN_AUTH,
                                         "responses": _responses("webhook handled", 400, 401, 409, 413)}},
        "/v2": {"get": {"responses": _responses("server metadata")}},
        "/v2/health/live": {"get": {"responses": _responses("liveness")}},
        "/v2/health/ready": {"get": {"responses": _responses("readiness", 503)}},
        **_oip_model_paths("/v2/models/{name}", [name]),
        **_oip_model_paths("/v2/models/{name}/versions/{version}", [name, version]),
    }
    return {"openapi": "3.0.3", "info": {"title": "Vigil service", "version": "1"}, "paths": paths,
            "components": {"securitySchemes": _SECURITY_SCHEMES}}
