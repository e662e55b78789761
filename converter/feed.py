"""Turn rows into ONNX Runtime inputs exactly as `ServingSchema.onnx_inputs` describes.

Parity is only a proof if the converter feeds ONNX Runtime the way the service will, so
this is the single definition of "schema + rows -> tensors". It needs only numpy and
pandas (no skl2onnx, no MLflow), so the serving path can use it too.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from vigil.schema import OnnxInput, ServingSchema

_NUMPY_DTYPES: dict[str, type] = {
    "float32": np.float32,
    "float64": np.float64,
    "int64": np.int64,
    "string": object,  # ONNX Runtime takes string tensors as object arrays of str
}


def input_tensor(spec: OnnxInput, frame: pd.DataFrame) -> np.ndarray:
    """One [rows, len(columns)] tensor of `spec.type` from the named columns of `frame`."""
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise ValueError(f"ONNX input {spec.name!r} needs missing column(s): {', '.join(missing)}")
    block = frame[spec.columns]
    if spec.type == "string":
        # Strings go in as Python str; None/NaN become "" like an unseen category.
        values = block.astype(object).where(block.notna(), "").to_numpy()
        return np.vectorize(str, otypes=[object])(values).reshape(len(frame), len(spec.columns))
    return block.to_numpy(dtype=_NUMPY_DTYPES[spec.type]).reshape(len(frame), len(spec.columns))


def onnx_feed(schema: ServingSchema | list[OnnxInput], frame: pd.DataFrame) -> Mapping[str, np.ndarray]:
    """The `InferenceSession.run` input dict for the rows in `frame`."""
    inputs = schema.onnx_inputs if isinstance(schema, ServingSchema) else schema
    return {spec.name: input_tensor(spec, frame) for spec in inputs}
