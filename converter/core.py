"""Convert and prove in one step, without MLflow: the converter's pure core.

Tries each candidate float input type (float32 first for trees, float64 first for the
rest) and keeps the first conversion that passes parity, so the serving graph is the
cheapest one that is provably faithful.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from converter.onnx_export import (
    ConversionError,
    build_schema,
    check_task,
    convert_estimator,
    estimator_name,
    float_candidates,
    onnx_layout,
)
from converter.parity import ATOL, RTOL, ParityReport, check_parity, open_session
from vigil.schema import Feature, ServingSchema


@dataclass
class Converted:
    """A converted model: graph bytes, its serving schema and its parity proof."""

    onnx_bytes: bytes
    schema: ServingSchema
    parity: ParityReport


def convert_and_check(
    estimator: Any,
    features: list[Feature],
    task: str,
    X: pd.DataFrame,
    target: str = "target",
    atol: float = ATOL,
    rtol: float = RTOL,
    progress: bool = False,
) -> Converted:
    """Convert `estimator` and check parity on `X`; the best attempt, passed or not.

    Raises ConversionError only when no float type converts at all. A parity failure
    is returned (parity.passed is False) so the caller can record it before raising.
    """
    check_task(estimator, task)
    candidates = float_candidates(estimator)
    if all(f.type == "string" for f in features):
        candidates = candidates[:1]  # no float inputs: the float type changes nothing
    attempts: list[Converted] = []
    errors: list[ConversionError] = []
    for float_type in candidates:
        inputs = onnx_layout(estimator, features, float_type)
        try:
            model = convert_estimator(estimator, inputs, task)
        except ConversionError as exc:
            errors.append(exc)
            continue
        onnx_bytes = model.SerializeToString()
        try:
            open_session(onnx_bytes)
        except Exception as exc:  # e.g. skl2onnx typing a tree ensemble double at ml opset 3
            errors.append(ConversionError(f"cannot convert {estimator_name(estimator)}: ONNX Runtime rejects "
                                          f"the {float_type} graph: {_one_line(exc)}"))
            continue
        schema = build_schema(estimator, model, features, inputs, task, target=target)
        try:
            parity = check_parity(estimator, onnx_bytes, schema, X, atol, rtol, progress)
        except Exception as exc:  # bad held-out data: one sentence, cause kept for --debug
            raise ConversionError(f"parity check could not run for {estimator_name(estimator)}: "
                                  f"{type(exc).__name__}: {_one_line(exc)}") from exc
        attempts.append(Converted(onnx_bytes, schema, parity))
        if parity.passed:
            break
    if not attempts:
        raise errors[0]
    passing = [a for a in attempts if a.parity.passed]
    return passing[0] if passing else attempts[0]


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:200]
