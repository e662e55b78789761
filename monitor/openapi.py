"""A hand-maintained OpenAPI 3.0 description of the monitor's routes (GET /openapi.json).

Mirrors monitor/server.py and the wire contract (monitor/CONTRACT.md); `tests/test_fuzz.py`
feeds it to schemathesis, so keep the three in step.
"""

from __future__ import annotations

from typing import Any

_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}
# 401 (vigil/auth.py) has the service's error shape: {"error": {"reason": "unauthorized", "message": ...}}
_UNAUTHORIZED = {
    "description": "missing or invalid bearer token (only when VIGIL_API_TOKEN is set)",
    "headers": {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}},
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["reason", "message"],
                                 "properties": {"reason": {"type": "string"}, "message": {"type": "string"}}}}}}},
}
_SECURITY_SCHEMES = {"apiToken": {"type": "http", "scheme": "bearer",
                                  "description": "VIGIL_API_TOKEN(_FILE); without one configured the routes are open"}}
_SCALAR = {"oneOf": [{"type": "number"}, {"type": "string"}]}
_PROFILE = {
    "type": "object",
    "required": ["v", "batch_id", "model", "version", "task", "timestamp", "rows", "profile",
                 "request_ids", "predictions"],
    "properties": {
        "v": {"type": "integer", "enum": [1]},
        "batch_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "producer": {"type": "string"},
        "model": {"type": "string"},
        "version": {"type": "string"},
        "task": {"type": "string", "enum": ["classification", "regression"]},
        "timestamp": {"type": "number"},
        "rows": {"type": "integer", "minimum": 1},
        "profile": {"type": "string", "format": "byte"},
        "request_ids": {"type": "array", "items": {"type": "string"}},
        "predictions": {"type": "array", "items": _SCALAR},
        "scores": {"type": "array", "nullable": True, "items": {"type": "array", "items": {"type": "number"}}},
        "classes": {"type": "array", "items": _SCALAR},
    },
}
_LABEL = {
    "type": "object",
    "required": ["request_id", "label"],
    "properties": {
        "request_id": {"type": "string"},
        "label": _SCALAR,
        "outcome": {"type": "boolean", "nullable": True},
        "value": {"type": "number", "nullable": True},
    },
}
_LABELS = {"oneOf": [{"type": "array", "items": _LABEL},
                     {"type": "object", "required": ["labels"],
                      "properties": {"labels": {"type": "array", "items": _LABEL}}}]}
_ALERT = {
    "type": "object",
    "required": ["alerts"],
    "properties": {
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "alerts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "enum": ["firing", "resolved"]},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        },
    },
}


# Routes that never need the token (monitor/server.py OPEN_PATHS: scrapes and probes).
_OPEN = ("/healthz", "/metrics", "/openapi.json")


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _responses(ok: str, *errors: int, media: str = "application/json") -> dict[str, Any]:
    out: dict[str, Any] = {"200": {"description": ok, "content": {media: {"schema": {}}}}}
    for status in errors:
        out[str(status)] = {"description": "refused", "content": {"application/json": {"schema": _ERROR}}}
    return out


def _query(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema}


def monitor_openapi() -> dict[str, Any]:
    """The OpenAPI 3.0 document of the monitor's HTTP routes."""
    model = _query("model", {"type": "string"})
    paths = {
        "/v1/profiles": {"post": {"requestBody": _json_body(_PROFILE),
                                  "responses": _responses("ingested or duplicate", 400, 404, 413, 422)}},
        "/v1/labels": {"post": {"requestBody": _json_body(_LABELS), "responses": _responses("joined", 400, 413)}},
        "/v1/status": {"get": {"responses": _responses("per-version counts")}},
        "/v1/drift": {"get": {"parameters": [model, _query("version", {"type": "string"}),
                                             _query("windows", {"type": "integer", "minimum": 1, "maximum": 1000})],
                              "responses": _responses("drift verdicts", 400)}},
        "/metrics": {"get": {"responses": _responses("Prometheus metrics", media="text/plain")}},
        "/report": {"get": {"parameters": [model], "responses": _responses("HTML report", media="text/html")}},
        "/healthz": {"get": {"responses": _responses("alive")}},
        "/v1/actions/alert": {"post": {"requestBody": _json_body(_ALERT),
                                       "responses": _responses("actions taken", 400)}},
    }
    for path, operations in paths.items():
        if path not in _OPEN:
            for operation in operations.values():
                operation["security"] = [{"apiToken": []}, {}]  # `{}`: open when no token is configured
                operation["responses"]["401"] = _UNAUTHORIZED
    return {"openapi": "3.0.3", "info": {"title": "Vigil monitor", "version": "1"}, "paths": paths,
            "components": {"securitySchemes": _SECURITY_SCHEMES}}
