"""Open Inference Protocol (v2) tensors <-> numpy, for both the gRPC and the REST routes.

A tensor arrives in one of three encodings: gRPC typed `contents`, gRPC
`raw_input_contents` / REST binary extension (little-endian bytes; BYTES elements each
prefixed by a 4-byte little-endian length), or REST JSON `data` (flat or nested,
row-major). All three decode to one `Tensor` whose element count was checked against its
shape. Value-level rules (NaN, ranges, row limits) are the Validator's job, not this one's.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from serving.errors import RequestError

NUMERIC = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
ACCEPTED = (*NUMERIC, "BYTES")
# gRPC typed contents: which repeated field carries each datatype
CONTENTS_FIELD = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT64": "int64_contents",
                  "INT32": "int_contents", "BYTES": "bytes_contents"}


@dataclass(frozen=True)
class Tensor:
    """A decoded tensor; `data` has exactly `shape` (BYTES: an object array of `bytes`)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray


def _bad(reason: str, message: str) -> RequestError:
    return RequestError(reason, message)


def check_header(name: str, datatype: str, shape: Sequence[Any]) -> tuple[int, ...]:
    """The shape as ints, refusing unknown datatypes and negative or non-integer dims."""
    if datatype not in ACCEPTED:
        raise _bad("bad_datatype", f"input {name!r} has datatype {datatype!r}; accepted: {', '.join(ACCEPTED)}")
    if not isinstance(shape, (list, tuple)):
        raise _bad("bad_shape", f"input {name!r}: shape must be a list of dimensions")
    dims = []
    for dim in shape:
        if type(dim) is bool or not isinstance(dim, int) or dim < 0:
            raise _bad("bad_shape", f"input {name!r}: shape {list(shape)} must hold non-negative integers")
        dims.append(int(dim))
    return tuple(dims)


def _reshape(name: str, datatype: str, shape: tuple[int, ...], flat: np.ndarray) -> Tensor:
    expected = math.prod(shape)
    if flat.size != expected:
        raise _bad(
            "shape_mismatch",
            f"input {name!r} has shape {list(shape)} ({expected} elements) but carries {flat.size} values",
        )
    return Tensor(name, datatype, shape, flat.reshape(shape))


def from_raw(name: str, datatype: str, shape: Sequence[Any], raw: bytes) -> Tensor:
    """Decode little-endian raw bytes (gRPC raw_input_contents, REST binary extension)."""
    dims = check_header(name, datatype, shape)
    if datatype == "BYTES":
        try:
            flat = deserialize_bytes_tensor(raw)
        except struct.error:
            raise _bad("bad_bytes", f"input {name!r}: BYTES data is truncated (each element is a 4-byte "
                                    "little-endian length followed by that many bytes)") from None
        return _reshape(name, datatype, dims, flat)
    dtype = np.dtype(NUMERIC[datatype]).newbyteorder("<")
    if len(raw) % dtype.itemsize:
        raise _bad("shape_mismatch", f"input {name!r}: {len(raw)} raw bytes is not a whole number of "
                                     f"{datatype} values ({dtype.itemsize} bytes each)")
    return _reshape(name, datatype, dims, np.frombuffer(raw, dtype=dtype))


def from_contents(name: str, datatype: str, shape: Sequence[Any], contents: Any) -> Tensor:
    """Decode gRPC typed `InferTensorContents` (the field matching the datatype)."""
    dims = check_header(name, datatype, shape)
    values = getattr(contents, CONTENTS_FIELD[datatype])
    if datatype == "BYTES":
        flat = np.array(list(values), dtype=object)
    else:
        flat = np.array(values, dtype=NUMERIC[datatype])
    others = [f for d, f in CONTENTS_FIELD.items() if d != datatype and len(getattr(contents, f))]
    if others:
        raise _bad("bad_datatype", f"input {name!r} is {datatype} but its values are in {others[0]}")
    return _reshape(name, datatype, dims, flat)


def from_json(name: str, datatype: str, shape: Sequence[Any], data: Any) -> Tensor:
    """Decode REST JSON `data` (flat or nested lists in row-major order)."""
    dims = check_header(name, datatype, shape)
    if not isinstance(data, list):
        data = [data]
    if datatype == "BYTES":
        flat = list(_flatten(name, data))
        for index, value in enumerate(flat):
            if type(value) is not str:
                raise _bad("expected_string", f"input {name!r} is BYTES: element {index} must be a string, "
                                              f"got {type(value).__name__}")
        array = np.empty(len(flat), dtype=object)
        array[:] = [v.encode() for v in flat]
        return _reshape(name, datatype, dims, array)
    flat = list(_flatten(name, data))
    for index, value in enumerate(flat):
        if type(value) not in (int, float):
            raise _bad("expected_number", f"input {name!r} is {datatype}: element {index} must be a number, "
                                          f"got {'boolean' if type(value) is bool else type(value).__name__}")
        if datatype.startswith("INT") and type(value) is float:
            raise _bad("expected_integer", f"input {name!r} is {datatype}: element {index} is {value!r}")
    try:
        array = np.array(flat, dtype=NUMERIC[datatype])
    except OverflowError:
        raise _bad("out_of_range", f"input {name!r}: a value does not fit in {datatype}") from None
    return _reshape(name, datatype, dims, array)


def _flatten(name: str, data: list[Any]) -> Any:
    for value in data:
        if isinstance(value, list):
            yield from _flatten(name, value)
        else:
            yield value


def decode_strings(tensor: Tensor) -> np.ndarray:
    """A BYTES tensor's elements as `str` (UTF-8), same shape."""
    out = np.empty(tensor.data.shape, dtype=object)
    flat_in, flat_out = tensor.data.reshape(-1), out.reshape(-1)
    for index, value in enumerate(flat_in):
        try:
            flat_out[index] = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError:
            raise _bad("bad_string", f"input {tensor.name!r}: element {index} is not valid UTF-8") from None
    return out


# -- outputs --------------------------------------------------------------------------------


def as_output(array: np.ndarray, datatype: str) -> np.ndarray:
    """The array in the wire dtype of `datatype` (BYTES: object array of UTF-8 bytes)."""
    if datatype == "BYTES":
        out = np.empty(array.shape, dtype=object)
        out.reshape(-1)[:] = [v if isinstance(v, bytes) else str(v).encode() for v in array.reshape(-1)]
        return out
    return np.ascontiguousarray(array, dtype=np.dtype(NUMERIC[datatype]).newbyteorder("<"))


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    """Little-endian bytes of an output array made by `as_output`."""
    if datatype == "BYTES":
        serialized = serialize_byte_tensor(array)
        return serialized.item() if serialized.size else b""
    return array.tobytes()


def to_json_data(array: np.ndarray, datatype: str) -> list[Any]:
    """A flat row-major list for REST JSON `data`."""
    if datatype == "BYTES":
        return [v.decode("utf-8", "replace") for v in array.reshape(-1)]
    return array.reshape(-1).tolist()
