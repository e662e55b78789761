"""The converted model at run time: an ONNX Runtime session plus its serving schema."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vigil import artifacts
from vigil.schema import ServingSchema


class ModelLoadError(RuntimeError):
    """The model folder is missing a file or holds something ONNX Runtime cannot load."""


@dataclass(frozen=True)
class Prediction:
    """Outputs for a batch of rows: labels (or values) and, for classifiers, probabilities."""

    labels: np.ndarray
    probabilities: np.ndarray | None


def session_options(threads: int) -> Any:
    """ORT options chosen on purpose rather than left at ORT's defaults.

    ORT defaults to one intra-op thread per core with spinning workers: on a shared box
    with several server workers that oversubscribes the CPU and burns it while idle. We
    run small models sequentially on `threads` threads and never spin.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    return options


class OnnxModel:
    """One loaded `model.onnx` + `schema.json` (+ optional `parity.json`) folder."""

    def __init__(self, folder: Path, threads: int = 1) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        onnx_path, schema_path = folder / artifacts.ONNX_FILE, folder / artifacts.SCHEMA_FILE
        for path in (onnx_path, schema_path):
            if not path.is_file():
                raise ModelLoadError(f"{path.name} not found in model folder {folder}")
        try:
            self.schema = ServingSchema.load(schema_path)
        except (ValueError, OSError) as exc:
            raise ModelLoadError(f"cannot read {schema_path}: {exc}") from None
        try:
            self.session = ort.InferenceSession(
                str(onnx_path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own exception types per failure kind
            raise ModelLoadError(f"ONNX Runtime cannot load {onnx_path}: {exc}") from None
        self.parity = _read_parity(folder / artifacts.PARITY_FILE)
        self._outputs = [self.schema.label_output]
        if self.schema.probability_output:
            self._outputs.append(self.schema.probability_output)
        self._check_graph()

    def _check_graph(self) -> None:
        graph_inputs = {i.name for i in self.session.get_inputs()}
        graph_outputs = {o.name for o in self.session.get_outputs()}
        wanted_inputs = {i.name for i in self.schema.onnx_inputs}
        if graph_inputs != wanted_inputs:
            raise ModelLoadError(f"schema inputs {sorted(wanted_inputs)} do not match the graph's {sorted(graph_inputs)}")
        missing = [o for o in self._outputs if o not in graph_outputs]
        if missing:
            raise ModelLoadError(f"graph has no output(s) {missing} named in the schema")

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        """Run the graph once on already validated, concatenated inputs."""
        results = self.session.run(self._outputs, inputs)
        labels = np.asarray(results[0]).reshape(-1) if self.schema.task == "classification" else np.asarray(results[0])
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]  # regressors return [rows, 1]
        probabilities = np.asarray(results[1]) if len(results) > 1 else None
        return Prediction(labels, probabilities)

    def dummy_inputs(self, rows: int = 1) -> dict[str, np.ndarray]:
        """Zeros / empty strings shaped like a real batch, for warm-up."""
        dtypes = {"float32": np.float32, "float64": np.float64, "int64": np.int64}
        inputs = {}
        for spec in self.schema.onnx_inputs:
            shape = (rows, len(spec.columns))
            if spec.type == "string":
                inputs[spec.name] = np.full(shape, "", dtype=object)
            else:
                inputs[spec.name] = np.zeros(shape, dtype=dtypes[spec.type])
        return inputs

    def warm_up(self, rows: int = 1, repeats: int = 3) -> float:
        """Run dummy batches (first runs allocate) and return the last run's seconds."""
        inputs = self.dummy_inputs(rows)
        elapsed = 0.0
        for _ in range(repeats):
            start = time.perf_counter()
            self.predict(inputs)
            elapsed = time.perf_counter() - start
        return elapsed


def _read_parity(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"error": f"unreadable {path.name}"}
