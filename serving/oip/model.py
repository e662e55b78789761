"""The Open Inference Protocol (v2) view of the served model, shared by gRPC and REST.

Tensor convention (also reported in the REST model metadata under "parameters"):

* Models whose features are all numeric take ONE input of shape [rows, n_features] in
  schema feature order, datatype FP32 or FP64 (INT64/INT32 are accepted and cast). Its
  name is advertised as the ONNX input's (e.g. "X"), but any single name is accepted.
* Models with string features take one input per feature, named by the feature, of
  shape [rows, 1] (or [rows]); BYTES (UTF-8) for strings, a numeric datatype otherwise.
* Outputs: classifiers return "label" ([rows], INT64 or BYTES like the classes) and
  "probabilities" ([rows, classes], FP32, columns in the "classes" order); regressors
  return "value" ([rows], FP32). Only the requested outputs are returned, if any are named.
* A request `id` becomes the per-row ids the monitor joins labels on: the id itself for
  one row, "<id>-<row>" for several; without an id the service generates them.

Requests go through `Runtime.predict`, so OIP traffic shares the HTTP routes' batcher,
validation rules and metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from vigil.schema import ServingSchema
from serving.errors import NotFound, NotReady, RequestError
from serving.model import Prediction
from serving.oip.tensors import Tensor, as_output, decode_strings
from serving.validation import ParsedRequest

if TYPE_CHECKING:
    from serving.runtime import Runtime

SERVER_NAME = "vigil"
SERVER_VERSION = "0.1.0"
EXTENSIONS = ["binary_tensor_data"]  # the REST binary tensor extension tritonclient uses
PLATFORM = "onnxruntime_onnx"
_ONNX_TO_OIP = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "string": "BYTES"}
CONVENTION = (
    "numeric models: one input [rows, n_features] FP32/FP64 (INT64/INT32 cast) in feature order; "
    "models with string features: one input per feature named by it, [rows, 1], BYTES for strings; "
    "outputs: label + probabilities (classifiers), value (regressors)"
)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape}


@dataclass(frozen=True)
class Output:
    """One answered output tensor, already in its wire dtype."""

    name: str
    datatype: str
    data: np.ndarray


class OipModel:
    """Maps OIP requests onto the worker's Runtime (one model per server)."""

    def __init__(self, runtime: "Runtime") -> None:
        self.runtime = runtime
        self._specs_of: ServingSchema | None = None
        self._cached: tuple[bool, list[TensorSpec], list[TensorSpec]] = (True, [], [])

    @property
    def schema(self) -> ServingSchema:
        if self.runtime.serving is None:
            raise NotReady("not_ready", "the model is still loading")
        return self.runtime.serving.schema

    @property
    def ready(self) -> bool:
        return self.runtime.ready

    @property
    def matrix_input(self) -> bool:
        """True when the model takes one [rows, n_features] numeric input."""
        return self._specs()[0]

    def _specs(self) -> tuple[bool, list[TensorSpec], list[TensorSpec]]:
        """(matrix input?, input specs, output specs) of the serving schema, built once per version.

        Every request reads them; a hot swap brings a new schema object and so new specs."""
        schema = self.schema
        if self._specs_of is not schema:
            self._cached = _describe(schema)
            self._specs_of = schema
        return self._cached

    def check(self, name: str, version: str = "") -> None:
        """Refuse (404) a model name or version this server does not serve."""
        schema = self.schema
        if name != schema.model_name or (version and version != schema.model_version):
            asked = f"{name!r}" + (f" version {version!r}" if version else "")
            raise NotFound("model_not_found", f"model {asked} is not served here; this server serves "
                                              f"{schema.model_name!r} version {schema.model_version!r}")

    # -- metadata ---------------------------------------------------------------------------

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": EXTENSIONS}

    def inputs(self) -> list[TensorSpec]:
        return self._specs()[1]

    def outputs(self) -> list[TensorSpec]:
        return self._specs()[2]

    def model_metadata(self) -> dict[str, Any]:
        schema = self.schema
        return {
            "name": schema.model_name,
            "versions": [schema.model_version],
            "platform": PLATFORM,
            "inputs": [s.to_dict() for s in self.inputs()],
            "outputs": [s.to_dict() for s in self.outputs()],
            "parameters": {"tensor_convention": CONVENTION, "classes": schema.classes, "task": schema.task},
        }

    # -- inference ----------------------------------------------------------------------------

    def parse(self, tensors: list[Tensor], request_id: str = "") -> ParsedRequest:
        """Validate decoded input tensors with the same rules as /predict."""
        bundle = self.runtime.serving
        if not self.ready or bundle is None:
            raise NotReady("not_ready", "the model is still loading")
        validator = bundle.validator
        if not tensors:
            raise RequestError("missing_inputs", "the request has no inputs")
        if self.matrix_input:
            parsed = validator.validate_matrix(self._matrix(tensors))
        else:
            parsed = validator.validate_columns(self._columns(tensors))
        if request_id:
            ids = [request_id] if parsed.rows == 1 else [f"{request_id}-{i}" for i in range(parsed.rows)]
            parsed = ParsedRequest(parsed.inputs, parsed.rows, ids)
        return parsed

    def _matrix(self, tensors: list[Tensor]) -> np.ndarray:
        expected = self.inputs()[0]
        if len(tensors) != 1:
            raise RequestError("wrong_input_count", f"this model takes one input {expected.name!r} of shape "
                                                    f"[rows, {expected.shape[1]}]; got {len(tensors)} inputs")
        tensor = tensors[0]
        if tensor.datatype == "BYTES":
            raise RequestError("bad_datatype", f"input {tensor.name!r} must be FP32, FP64, INT64 or INT32, not BYTES")
        if len(tensor.shape) != 2:
            raise RequestError("bad_shape", f"input {tensor.name!r} must have shape [rows, {expected.shape[1]}], "
                                            f"got {list(tensor.shape)}")
        return tensor.data

    def _columns(self, tensors: list[Tensor]) -> dict[str, np.ndarray]:
        specs = {s.name: s for s in self.inputs()}
        columns: dict[str, np.ndarray] = {}
        for tensor in tensors:
            if tensor.name in columns:
                raise RequestError("duplicate_input", f"input {tensor.name!r} is given twice")
            spec = specs.get(tensor.name)
            if spec is not None and (spec.datatype == "BYTES") != (tensor.datatype == "BYTES"):
                raise RequestError("bad_datatype", f"input {tensor.name!r} must be "
                                   f"{'BYTES' if spec.datatype == 'BYTES' else 'numeric (FP32/FP64/INT64/INT32)'}, "
                                   f"got {tensor.datatype}")
            if len(tensor.shape) > 2 or (len(tensor.shape) == 2 and tensor.shape[1] != 1):
                raise RequestError("bad_shape", f"input {tensor.name!r} must have shape [rows, 1], "
                                                f"got {list(tensor.shape)}")
            data = tensor.data.reshape(-1)
            columns[tensor.name] = decode_strings(Tensor(tensor.name, "BYTES", data.shape, data)) \
                if tensor.datatype == "BYTES" else data
        return columns

    def output_specs(self, requested: list[str]) -> list[TensorSpec]:
        """The outputs to answer: the requested ones (all if none named); 400 for unknown names."""
        specs = self.outputs()
        names = [s.name for s in specs]
        unknown = [n for n in requested if n not in names]
        if unknown:
            raise RequestError("unknown_output", f"unknown output(s) {', '.join(unknown)}; "
                                                 f"this model has {', '.join(names)}")
        return [s for s in specs if s.name in requested] if requested else specs

    def outputs_of(self, specs: list[TensorSpec], prediction: Prediction) -> list[Output]:
        """A request's slice of a batch result as the output tensors in `specs`."""
        out = []
        for spec in specs:
            data = prediction.probabilities if spec.name == "probabilities" else prediction.labels
            if data is None:  # a model without probabilities does not advertise them
                continue
            out.append(Output(spec.name, spec.datatype, as_output(np.asarray(data), spec.datatype)))
        return out

    async def infer(self, parsed: ParsedRequest, requested: list[str], protocol: str = "http") -> list[Output]:
        """Run validated rows through the shared batcher; return the requested outputs."""
        specs = self.output_specs(requested)
        future, bundle, _ = self.runtime.enqueue(parsed, protocol)
        prediction = await future
        self.runtime.rows_answered(parsed.rows, bundle)
        return self.outputs_of(specs, prediction)


def _describe(schema: ServingSchema) -> tuple[bool, list[TensorSpec], list[TensorSpec]]:
    """What `OipModel._specs` caches: the tensor convention applied to one schema."""
    matrix = all(f.type != "string" for f in schema.features)
    if matrix:
        first = schema.onnx_inputs[0]
        name = first.name if len(schema.onnx_inputs) == 1 else "input"
        datatype = _ONNX_TO_OIP[first.type] if first.type in ("float32", "float64") else "FP64"
        inputs = [TensorSpec(name, datatype, [-1, len(schema.features)])]
    else:
        by_column = {c: spec.type for spec in schema.onnx_inputs for c in spec.columns}
        inputs = [TensorSpec(f.name, _ONNX_TO_OIP[by_column.get(f.name, "float64")], [-1, 1])
                  for f in schema.features]
    if schema.task == "regression":
        outputs = [TensorSpec("value", "FP32", [-1])]
    else:
        label_type = "BYTES" if any(isinstance(c, str) for c in schema.classes) else "INT64"
        outputs = [TensorSpec("label", label_type, [-1])]
        if schema.probability_output:
            outputs.append(TensorSpec("probabilities", "FP32", [-1, len(schema.classes)]))
    return matrix, inputs, outputs
