"""Open Inference Protocol (v2) REST routes, next to /predict on the same Starlette app.

Supports JSON tensors and Triton's binary tensor extension (what `tritonclient.http` sends
by default): a JSON header of `Inference-Header-Content-Length` bytes followed by each
input's raw bytes (`parameters.binary_data_size`), and binary outputs on request
(`parameters.binary_data` per output, or `binary_data_output` for all). Errors answer
`{"error": message, "reason": code}` as the OIP REST spec has it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.http.messages import json_response, read_body
from serving.errors import RequestError, error_headers
from serving.oip.model import OipModel, Output
from serving.oip.tensors import Tensor, from_json, from_raw, to_json_data, to_raw
from serving.runtime import Runtime

HEADER_LENGTH = "Inference-Header-Content-Length"


def _error(runtime: Runtime, error: RequestError) -> Response:
    runtime.refused(error)
    return json_response({"error": error.message, "reason": error.reason}, error.status, error_headers(error))


def split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON inference header and the binary tail (empty without the extension)."""
    if header_length is None:
        head, tail = body, b""
    else:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise RequestError("bad_header_length", f"{HEADER_LENGTH} is {header_length!r} but the body has "
                                                    f"{len(body)} bytes")
        head, tail = body[: int(header_length)], body[int(header_length):]
    try:
        payload = orjson.loads(head)
    except orjson.JSONDecodeError as exc:
        reason = "request body is empty" if not head.strip() else f"not valid JSON: {exc}"
        raise RequestError("invalid_json", f"inference request {reason}") from None
    if not isinstance(payload, dict):
        raise RequestError("bad_body", "inference request must be a JSON object with \"inputs\"")
    return payload, tail


def _field(entry: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = entry.get(key)
    if not isinstance(value, kind):
        raise RequestError("bad_input", f"{where}: {key!r} must be a {kind.__name__}")
    return value


def decode_inputs(payload: dict[str, Any], tail: bytes) -> list[Tensor]:
    """Input tensors from JSON `data` or from the binary tail, in order."""
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise RequestError("missing_inputs", 'inference request needs a non-empty "inputs" list')
    tensors, offset = [], 0
    for index, entry in enumerate(inputs):
        if not isinstance(entry, dict):
            raise RequestError("bad_input", f"inputs[{index}] must be an object")
        name = _field(entry, "name", str, f"inputs[{index}]")
        where = f"input {name!r}"
        datatype, shape = _field(entry, "datatype", str, where), _field(entry, "shape", list, where)
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is None:
            if "data" not in entry:
                raise RequestError("bad_input", f'{where} has neither "data" nor a binary_data_size')
            tensors.append(from_json(name, datatype, shape, entry["data"]))
            continue
        if type(size) is not int or size < 0 or offset + size > len(tail):
            raise RequestError("bad_binary_size", f"{where}: binary_data_size {size!r} does not fit the "
                                                  f"{len(tail) - offset} binary bytes left in the body")
        tensors.append(from_raw(name, datatype, shape, tail[offset:offset + size]))
        offset += size
    if offset != len(tail):
        raise RequestError("bad_binary_size", f"{len(tail) - offset} binary bytes after the last input are unused")
    return tensors


def requested_outputs(payload: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    """Names of the requested outputs and, per name, whether it is wanted in binary."""
    default = bool((payload.get("parameters") or {}).get("binary_data_output", False))
    outputs = payload.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs):
        raise RequestError("bad_outputs", '"outputs" must be a list of objects with a "name"')
    binary = {o["name"]: bool((o.get("parameters") or {}).get("binary_data", default)) for o in outputs}
    return [o["name"] for o in outputs], binary or {"*": default}


def encode_response(oip: OipModel, request_id: Any, outputs: list[Output], binary: dict[str, bool]) -> Response:
    schema = oip.schema
    head: dict[str, Any] = {"model_name": schema.model_name, "model_version": schema.model_version}
    if request_id:
        head["id"] = request_id
    tails, described = [], []
    for out in outputs:
        entry: dict[str, Any] = {"name": out.name, "datatype": out.datatype, "shape": list(out.data.shape)}
        if binary.get(out.name, binary.get("*", False)):
            raw = to_raw(out.data, out.datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            tails.append(raw)
        else:
            entry["data"] = to_json_data(out.data, out.datatype)
        described.append(entry)
    head["outputs"] = described
    body = orjson.dumps(head)
    if not tails:
        return Response(body, media_type="application/json")
    return Response(body + b"".join(tails), media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(body))})


def oip_routes(runtime: Runtime) -> list[Route]:
    """GET /v2, /v2/health/{live,ready}, /v2/models/{name}[/versions/{v}][/ready], POST .../infer."""
    oip = OipModel(runtime)
    limit = runtime.settings.max_body_bytes

    async def live(_: Request) -> Response:
        return json_response({"live": True})

    async def ready(_: Request) -> Response:
        return json_response({"ready": oip.ready}, 200 if oip.ready else 503)

    async def server_metadata(_: Request) -> Response:
        return json_response(oip.server_metadata())

    def _check(request: Request) -> None:
        oip.check(request.path_params["name"], request.path_params.get("version", ""))

    async def model_metadata(request: Request) -> Response:
        try:
            _check(request)
            return json_response(oip.model_metadata())
        except RequestError as error:
            return _error(runtime, error)

    async def model_ready(request: Request) -> Response:
        try:
            _check(request)
        except RequestError as error:
            return _error(runtime, error)
        return json_response({"name": oip.schema.model_name, "ready": oip.ready}, 200 if oip.ready else 503)

    async def infer(request: Request) -> Response:
        start = time.perf_counter()
        try:
            runtime.admit(request.scope["path"], lambda: request.headers.get("authorization"))
        except RequestError as error:
            return _error(runtime, error)
        try:
            _check(request)
            if request.headers.get("content-encoding", "identity") != "identity":
                raise RequestError("unsupported_encoding", "compressed request bodies are not accepted")
            body = await read_body(request.scope, request.receive, limit)
            payload, tail = split_body(body, request.headers.get(HEADER_LENGTH))
            request_id = payload.get("id", "")
            parsed = oip.parse(decode_inputs(payload, tail), request_id if isinstance(request_id, str) else "")
            names, binary = requested_outputs(payload)
            response = encode_response(oip, request_id, await oip.infer(parsed, names), binary)
        except RequestError as error:
            return _error(runtime, error)
        finally:
            runtime.release()
        runtime.answered(start, "http")
        return response

    model_routes = []
    for base in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        model_routes += [
            Route(base, model_metadata, methods=["GET"]),
            Route(base + "/ready", model_ready, methods=["GET"]),
            Route(base + "/infer", infer, methods=["POST"]),
        ]
    return [
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        *model_routes,
    ]
