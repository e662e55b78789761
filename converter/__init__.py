"""Registered scikit-learn model version -> ONNX graph with a parity proof.

`convert_version` is the MLflow-facing entry point used by `vigil convert`; the pure
core (`convert_estimator`, `build_schema`, `check_parity`, `convert_and_check`) needs
no registry and is what the unit tests exercise. `onnx_feed` is the one definition of
"serving schema + rows -> ONNX Runtime inputs".
"""

from converter.core import Converted, convert_and_check
from converter.feed import onnx_feed
from converter.onnx_export import (
    TARGET_ML_OPSET,
    TARGET_OPSET,
    ConversionError,
    build_schema,
    convert_estimator,
    onnx_layout,
)
from converter.parity import ParityReport, check_parity
from converter.registry_io import ConversionReport, convert_version, features_from_signature

__all__ = [
    "TARGET_ML_OPSET",
    "TARGET_OPSET",
    "ConversionError",
    "ConversionReport",
    "Converted",
    "ParityReport",
    "build_schema",
    "check_parity",
    "convert_and_check",
    "convert_estimator",
    "convert_version",
    "features_from_signature",
    "onnx_feed",
    "onnx_layout",
]
