"""ModelInferRequest -> tensors and outputs -> ModelInferResponse, shared by the unary and streaming RPCs.

Kept free of grpc and of the Runtime so both call paths pay the same (small) per-call cost:
raw_input_contents become numpy views with `numpy.frombuffer` (no copy), and the response
is filled in place inside the message the caller owns (a ModelStreamInferResponse's
`infer_response`, or a fresh ModelInferResponse), so nothing is built twice.
"""

from __future__ import annotations

from typing import Any

from tritonclient.grpc import service_pb2 as pb

from vigil.schema import ServingSchema
from serving.errors import RequestError
from serving.oip.model import Output
from serving.oip.tensors import Tensor, from_contents, from_raw, to_raw

__all__ = ["authorization", "decode_inputs", "fill_response", "pb"]


def decode_inputs(request: Any) -> list[Tensor]:
    """The request's input tensors, from raw_input_contents (all inputs) or typed contents."""
    raw = request.raw_input_contents
    inputs = request.inputs
    if raw and len(raw) != len(inputs):
        raise RequestError("bad_raw_contents", f"raw_input_contents has {len(raw)} entries for "
                           f"{len(inputs)} inputs; send raw data for every input or for none")
    if raw:
        return [from_raw(t.name, t.datatype, list(t.shape), raw[i]) for i, t in enumerate(inputs)]
    return [from_contents(t.name, t.datatype, list(t.shape), t.contents) for t in inputs]


def fill_response(response: Any, request: Any, schema: ServingSchema, outputs: list[Output]) -> Any:
    """Write the answer to `request` into `response` (a ModelInferResponse) and return it.

    `schema` is the answering version's: after a hot swap, requests still in flight on the
    old version report it."""
    response.model_name = schema.model_name
    response.model_version = schema.model_version
    response.id = request.id
    for out in outputs:
        tensor = response.outputs.add(name=out.name, datatype=out.datatype)
        tensor.shape.extend(out.data.shape)
        response.raw_output_contents.append(to_raw(out.data, out.datatype))
    return response


def authorization(context: Any) -> str | None:
    """The `authorization` metadata of a call (gRPC's counterpart of the HTTP header)."""
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return value
    return None
