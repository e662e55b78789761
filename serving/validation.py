"""Turn one request body into model-ready arrays, or a `RequestError` that names the problem.

Validation runs per request *before* batching, so a bad request is answered on its own
and never fails the other requests it would have shared a batch with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import orjson

from vigil.schema import ServingSchema
from serving.errors import RequestError

_NUMERIC = frozenset({int, float})
_DTYPES = {"float32": np.float32, "float64": np.float64, "int64": np.int64}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64_MAX = 2**63 - 1
# orjson (strict JSON) rejects these tokens with a bare "unexpected character": spot them
# so the client learns *why* its body is invalid.
_NON_FINITE_TOKEN = re.compile(rb"(?<![\w\"])-?(NaN|Infinity|inf|nan)(?![\w\"])")


@dataclass(frozen=True)
class ParsedRequest:
    """A validated request: one [rows, columns] array per ONNX input, plus client ids."""

    inputs: dict[str, np.ndarray]
    rows: int
    ids: list[str] | None


def _row_type_error(index: int, row: object) -> RequestError:
    return RequestError(
        "bad_row", f"instances[{index}] must be a list of feature values or an object, got {type(row).__name__}"
    )


class Validator:
    """Checks requests against one model's serving schema."""

    def __init__(self, schema: ServingSchema, max_rows: int) -> None:
        self.schema = schema
        self.max_rows = max_rows
        self.names = schema.feature_names
        self.types = {f.name: f.type for f in schema.features}
        self.name_set = frozenset(self.names)
        self.all_numeric = all(f.type == "number" for f in schema.features)
        # One numeric ONNX input taking every feature in order (e.g. iris "X"): the row
        # matrix *is* the input, no need to split it into columns and stack them back.
        only = schema.onnx_inputs[0] if len(schema.onnx_inputs) == 1 else None
        self.direct = only if only and only.type != "string" and only.columns == self.names else None

    # -- entry points -------------------------------------------------------------------

    def parse_body(self, body: bytes) -> ParsedRequest:
        """Decode a JSON body and validate it."""
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise self._decode_error(body, exc) from None
        return self.validate(payload)

    def validate(self, payload: Any) -> ParsedRequest:
        """Validate an already decoded `{"instances": [...], "ids": [...]}` payload."""
        if not isinstance(payload, dict):
            raise RequestError("bad_body", f'body must be a JSON object with "instances", got {type(payload).__name__}')
        instances = payload.get("instances")
        if instances is None:
            raise RequestError("missing_instances", 'body has no "instances" list')
        if not isinstance(instances, list):
            raise RequestError("bad_instances", f'"instances" must be a list of rows, got {type(instances).__name__}')
        if not instances:
            raise RequestError("empty_instances", '"instances" is empty: send at least one row')
        if len(instances) > self.max_rows:
            raise RequestError(
                "too_many_rows", f"{len(instances)} rows in one request; the limit is {self.max_rows}"
            )
        ids = self._ids(payload.get("ids"), len(instances))
        rows = self._rows(instances)
        return ParsedRequest(self._inputs(rows), len(rows), ids)

    # -- column entry points (binary protocols: OIP v2 over gRPC / REST) ------------------

    def validate_matrix(self, matrix: np.ndarray, ids: list[str] | None = None) -> ParsedRequest:
        """Validate a numeric [rows, features] array holding every feature in schema order."""
        if matrix.ndim != 2 or matrix.shape[1] != len(self.names):
            raise RequestError("wrong_feature_count", f"expected shape [rows, {len(self.names)}] "
                               f"({', '.join(self.names)}), got {list(matrix.shape)}")
        if any(self.types[n] == "string" for n in self.names):
            raise RequestError("bad_input", "this model has string features: send one input per feature")
        self._check_row_count(matrix.shape[0])
        _check_finite(matrix, self.names)
        for i, name in enumerate(self.names):
            if self.types[name] == "integer":
                _check_integral(name, matrix[:, i])
        if self.direct is not None:
            if self.direct.type == "float32" and matrix.dtype != np.float32:
                _check_float32(matrix, self.names)
            return ParsedRequest({self.direct.name: matrix.astype(_DTYPES[self.direct.type], copy=False)},
                                 matrix.shape[0], ids)
        columns = {name: matrix[:, i].astype(np.float64) for i, name in enumerate(self.names)}
        return ParsedRequest(self._assemble(columns), matrix.shape[0], ids)

    def validate_columns(self, columns: dict[str, np.ndarray], ids: list[str] | None = None) -> ParsedRequest:
        """Validate one 1-D array per feature (string features: object arrays of `str`)."""
        missing = [n for n in self.names if n not in columns]
        unknown = sorted(k for k in columns if k not in self.name_set)
        if missing or unknown:
            parts = ([f"missing feature(s) {', '.join(missing)}"] if missing else []) + (
                [f"unknown feature(s) {', '.join(unknown)}"] if unknown else [])
            raise RequestError("unknown_feature" if unknown else "missing_feature", "; ".join(parts))
        lengths = {name: len(columns[name]) for name in self.names}
        if len(set(lengths.values())) > 1:
            raise RequestError("rows_mismatch", "features have different row counts: "
                               + ", ".join(f"{n}={r}" for n, r in lengths.items()))
        rows = lengths[self.names[0]]
        self._check_row_count(rows)
        checked = {}
        for name in self.names:
            column = columns[name]
            if self.types[name] == "string":
                if column.dtype != object or not all(type(v) is str for v in column):
                    raise RequestError("expected_string", f"feature {name!r} must hold strings")
                checked[name] = column
                continue
            if column.dtype == object or column.dtype.kind not in "fiu":
                raise RequestError("expected_number", f"feature {name!r} must hold numbers")
            _check_finite(column.reshape(-1, 1), [name])
            if self.types[name] == "integer":
                _check_integral(name, column)
            checked[name] = column.astype(np.float64, copy=False)
        return ParsedRequest(self._assemble(checked), rows, ids)

    def _check_row_count(self, rows: int) -> None:
        if rows == 0:
            raise RequestError("empty_instances", "the input has no rows: send at least one row")
        if rows > self.max_rows:
            raise RequestError("too_many_rows", f"{rows} rows in one request; the limit is {self.max_rows}")

    # -- pieces ---------------------------------------------------------------------------

    @staticmethod
    def _decode_error(body: bytes, exc: Exception) -> RequestError:
        if not body.strip():
            return RequestError("invalid_json", "request body is empty; expected a JSON object")
        if "infinity when parsed" in str(exc):
            return RequestError(
                "non_finite", f"a number is too large for a 64-bit float (it would be infinite): {exc}"
            )
        if _NON_FINITE_TOKEN.search(body):
            return RequestError(
                "non_finite", "NaN/Infinity are not valid JSON numbers and are not accepted as feature values"
            )
        return RequestError("invalid_json", f"body is not valid JSON: {exc}")

    @staticmethod
    def _ids(ids: Any, rows: int) -> list[str] | None:
        if ids is None:
            return None
        if not isinstance(ids, list):
            raise RequestError("bad_ids", f'"ids" must be a list of strings, got {type(ids).__name__}')
        if len(ids) != rows:
            raise RequestError("ids_mismatch", f'"ids" has {len(ids)} entries but "instances" has {rows} rows')
        for index, value in enumerate(ids):
            if type(value) is not str:
                raise RequestError("bad_ids", f"ids[{index}] must be a string, got {type(value).__name__}")
        return ids

    def _rows(self, instances: list[Any]) -> list[list[Any]]:
        """Every row as a list in schema feature order (objects are reordered by name)."""
        width = len(self.names)
        rows: list[list[Any]] = []
        for index, row in enumerate(instances):
            if type(row) is list:
                if len(row) != width:
                    raise RequestError(
                        "wrong_feature_count",
                        f"instances[{index}] has {len(row)} values, expected {width} ({', '.join(self.names)})",
                    )
                rows.append(row)
            elif type(row) is dict:
                rows.append(self._row_from_object(index, row))
            else:
                raise _row_type_error(index, row)
        return rows

    def _row_from_object(self, index: int, row: dict[str, Any]) -> list[Any]:
        keys = row.keys()
        if keys != self.name_set:
            missing = [n for n in self.names if n not in row]
            unknown = sorted(k for k in keys if k not in self.name_set)
            parts = []
            if missing:
                parts.append(f"missing feature(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown feature(s) {', '.join(unknown)}")
            reason = "unknown_feature" if unknown else "missing_feature"
            raise RequestError(reason, f"instances[{index}]: {'; '.join(parts)}")
        return [row[name] for name in self.names]

    def _inputs(self, rows: list[list[Any]]) -> dict[str, np.ndarray]:
        # Fast path: an all-"number" model whose rows hold only ints/floats goes to numpy in
        # one call. Anything else takes the column-by-column path that can name the culprit.
        if self.all_numeric and set(map(type, chain.from_iterable(rows))) <= _NUMERIC:
            try:
                matrix = np.array(rows, dtype=np.float64)
            except OverflowError:
                matrix = None  # an int too large for float64: let the column path name it
            if matrix is not None and np.isfinite(matrix).all():
                if self.direct is not None:
                    if self.direct.type == "float32":
                        _check_float32(matrix, self.names)
                    return {self.direct.name: matrix.astype(_DTYPES[self.direct.type], copy=False)}
                columns = {name: matrix[:, i] for i, name in enumerate(self.names)}
                return self._assemble(columns)
        columns = {name: self._column(name, [row[i] for row in rows]) for i, name in enumerate(self.names)}
        return self._assemble(columns)

    def _column(self, name: str, values: list[Any]) -> np.ndarray:
        kind = self.types[name]
        if kind == "string":
            for index, value in enumerate(values):
                if type(value) is not str:
                    raise RequestError(
                        "expected_string", f"feature {name!r} in instances[{index}] must be a string, got {_describe(value)}"
                    )
            return np.array(values, dtype=object)
        for index, value in enumerate(values):
            _check_number(name, index, value, integer=kind == "integer")
        return np.array(values, dtype=np.float64)

    def _assemble(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        inputs: dict[str, np.ndarray] = {}
        for spec in self.schema.onnx_inputs:
            if spec.type == "string":
                block = np.empty((len(columns[spec.columns[0]]), len(spec.columns)), dtype=object)
                for j, col in enumerate(spec.columns):
                    block[:, j] = columns[col].astype(str) if columns[col].dtype != object else columns[col]
                inputs[spec.name] = block
                continue
            block = np.column_stack([columns[c] for c in spec.columns])
            if spec.type == "float32":
                _check_float32(block, spec.columns)
            inputs[spec.name] = block.astype(_DTYPES[spec.type], copy=False)
        return inputs


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    return f"{type(value).__name__} {value!r}"[:60]


def _check_number(name: str, index: int, value: Any, integer: bool) -> None:
    where = f"feature {name!r} in instances[{index}]"
    kind = type(value)
    if kind is bool:
        raise RequestError("expected_number", f"{where} must be a number, got boolean {str(value).lower()}")
    if kind is int:
        if abs(value) > (_INT64_MAX if integer else 1.7e308):
            raise RequestError("out_of_range", f"{where} is too large: {str(value)[:40]}")
        return
    if kind is float:
        if value != value or value in (float("inf"), float("-inf")):
            raise RequestError("non_finite", f"{where} is {value}; NaN/Infinity are not accepted")
        if integer and not value.is_integer():
            raise RequestError("expected_integer", f"{where} must be an integer, got {value!r}")
        return
    raise RequestError("expected_number", f"{where} must be a number, got {_describe(value)}")


def _check_float32(block: np.ndarray, names: list[str]) -> None:
    """The model computes in float32: larger magnitudes would silently become infinity."""
    if block.size and np.abs(block).max() > _FLOAT32_MAX:
        row, col = np.unravel_index(np.argmax(np.abs(block)), block.shape)
        raise RequestError(
            "out_of_range",
            f"feature {names[col]!r} in instances[{row}] is {block[row, col]:g}, beyond the float32 range the model uses",
        )


def _check_finite(block: np.ndarray, names: list[str]) -> None:
    """Refuse NaN/inf in a float [rows, columns] block, naming the first culprit."""
    if block.dtype.kind != "f" or np.isfinite(block).all():
        return
    row, col = np.argwhere(~np.isfinite(block))[0]
    raise RequestError(
        "non_finite", f"feature {names[col]!r} in row {row} is {block[row, col]}; NaN/Infinity are not accepted"
    )


def _check_integral(name: str, column: np.ndarray) -> None:
    if column.dtype.kind == "f" and not np.all(np.mod(column, 1) == 0):
        row = int(np.argmax(np.mod(column, 1) != 0))
        raise RequestError("expected_integer", f"feature {name!r} in row {row} must be an integer, got {column[row]!r}")
