"""Hypothesis strategies for hostile requests: prediction bodies (JSON and OIP v2) and gRPC.

Each strategy draws something a real client could send by mistake or malice: wrong shapes
and types, NaN/inf, huge numbers, unicode, deep nesting, giant bodies, ids that don't match
the rows, raw bytes. tests/test_fuzz.py sends them to real servers.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

OIP_DATATYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                 "FP16", "FP32", "FP64", "BYTES"]
_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([1e308, -1e308, 3.5e38, 1e-320, 0.0])
_INTS = st.integers(min_value=-(2**70), max_value=2**70)
_TEXT = st.text(max_size=12)  # the default alphabet covers surrogates-free unicode
_SCALARS = st.one_of(_FLOATS, _INTS, _TEXT, st.booleans(), st.none())
_JSON = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
                     max_leaves=12)


def _mostly(value: Any, other: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`value` four times in five, else a draw from `other` (so most cases get past routing)."""
    return st.integers(0, 4).flatmap(lambda i: other if i == 0 else st.just(value))


def _dumps(value: Any) -> bytes:
    # allow_nan: Python writes the NaN/Infinity tokens strict JSON forbids, as sloppy clients do
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _rows(features: list[str]) -> st.SearchStrategy[Any]:
    width = len(features)
    good_row = st.lists(_FLOATS | _INTS, min_size=width, max_size=width)
    any_row = st.lists(_SCALARS, max_size=width + 2)
    by_name = st.dictionaries(st.sampled_from(features) | _TEXT, _SCALARS, max_size=width + 1)
    return st.lists(good_row | any_row | by_name | _JSON, max_size=8)


def _deep(depth: int) -> bytes:
    return b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"


@st.composite
def predict_bodies(draw: st.DrawFn, features: list[str], body_limit: int) -> bytes:
    """A /predict (or /v1/predict) body: mostly near-valid JSON, sometimes raw garbage."""
    kind = draw(st.sampled_from(["rows", "rows", "rows", "json", "deep", "giant", "bytes"]))
    if kind == "deep":
        return _deep(draw(st.integers(1, 3000)))
    if kind == "giant":
        return b'{"instances": [' + b"[1,2,3,4]," * (body_limit // 10 + draw(st.integers(1, 100))) + b"[1,2,3,4]]}"
    if kind == "bytes":
        return draw(st.binary(max_size=64))
    if kind == "json":
        return _dumps(draw(_JSON))
    body: dict[str, Any] = {"instances": draw(_rows(features))}
    ids = draw(st.none() | st.lists(_TEXT | _INTS, max_size=10) | _SCALARS)
    if ids is not None:
        body["ids"] = ids
    if draw(st.booleans()):
        body[draw(_TEXT)] = draw(_SCALARS)  # unknown extra field
    return _dumps(body)


@st.composite
def oip_bodies(draw: st.DrawFn, input_name: str) -> bytes:
    """An OIP v2 REST infer body: tensors whose name, datatype, shape and data disagree."""
    def tensor(draw: st.DrawFn = draw) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": draw(_mostly(input_name, _TEXT)),
            "shape": draw(st.lists(st.integers(-2, 2**40) | st.integers(0, 6), max_size=4) | _SCALARS),
            "datatype": draw(st.sampled_from(OIP_DATATYPES) | _TEXT),
            "data": draw(st.lists(_FLOATS | _INTS, max_size=24) | st.lists(_SCALARS, max_size=8) | _JSON),
        }
        if draw(st.booleans()):
            entry["parameters"] = draw(st.dictionaries(_TEXT, _SCALARS, max_size=2)
                                       | st.just({"binary_data_size": draw(st.integers(-5, 10**9))}))
        return entry

    body: dict[str, Any] = {"inputs": [tensor() for _ in range(draw(st.integers(0, 3)))]}
    if draw(st.booleans()):
        body["id"] = draw(_SCALARS)
    if draw(st.booleans()):
        output = st.fixed_dictionaries({"name": _TEXT | st.sampled_from(["label", "probabilities"])},
                                       optional={"parameters": st.dictionaries(_TEXT, _SCALARS)})
        body["outputs"] = draw(st.lists(output, max_size=3) | _SCALARS)
    return _dumps(body) if draw(st.integers(0, 9)) else _dumps(draw(_JSON))


_CONTENT_FIELDS = ["bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents",
                   "fp32_contents", "fp64_contents", "bytes_contents"]


def _contents(draw: st.DrawFn, field: str) -> list[Any]:
    size = st.integers(0, 24)
    n = draw(size)
    if field == "bool_contents":
        return draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if field == "bytes_contents":
        return draw(st.lists(st.binary(max_size=8), min_size=n, max_size=n))
    if field in ("fp32_contents", "fp64_contents"):
        width = 32 if field == "fp32_contents" else 64
        return draw(st.lists(st.floats(width=width), min_size=n, max_size=n))
    bits = 64 if "64" in field else 32
    low = 0 if field.startswith("uint") else -(2 ** (bits - 1))
    high = 2**bits - 1 if field.startswith("uint") else 2 ** (bits - 1) - 1
    return draw(st.lists(st.integers(low, high), min_size=n, max_size=n))


@st.composite
def grpc_requests(draw: st.DrawFn, model: str, input_name: str) -> Any:
    """A raw `ModelInferRequest` with mismatched datatypes, shapes, contents and outputs."""
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(
        model_name=draw(_mostly(model, _TEXT)), model_version=draw(_mostly("", _TEXT | st.just("1"))), id=draw(_TEXT))
    raw = draw(st.booleans())
    for _ in range(draw(st.integers(0, 3))):
        tensor = request.inputs.add()
        tensor.name = draw(_mostly(input_name, _TEXT))
        tensor.datatype = draw(st.sampled_from(OIP_DATATYPES) | _TEXT)
        tensor.shape.extend(draw(st.lists(st.integers(-3, 2**40) | st.integers(0, 6), max_size=4)))
        if raw:
            request.raw_input_contents.append(draw(st.binary(max_size=128)))
        else:
            field = draw(st.sampled_from(_CONTENT_FIELDS))
            getattr(tensor.contents, field).extend(_contents(draw, field))
    if raw and draw(st.booleans()):
        request.raw_input_contents.append(draw(st.binary(max_size=16)))  # more buffers than inputs
    for name in draw(st.lists(_TEXT | st.sampled_from(["label", "probabilities"]), max_size=2)):
        request.outputs.add().name = name
    return request
