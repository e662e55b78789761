"""Prove an ONNX graph predicts what the scikit-learn estimator predicts.

Runs both on the same held-out rows — the estimator on the frame as trained, ONNX
Runtime on tensors built by `converter.feed` exactly as the service builds them — and
compares labels (must be identical) and probabilities / regression values (within an
absolute tolerance, or for regression also a relative one, since a 1e-5 absolute bound
is meaningless on targets in the thousands).

One exception to "labels identical": a row whose scikit-learn probabilities tie at the
top (within the tolerance, e.g. 0.5/0.5 from an even number of trees). sklearn breaks
the tie by class order, ONNX by float rounding; either label is right, so such rows are
counted as `label_ties` instead of failing the check.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import onnx
import pandas as pd
from tqdm import tqdm

from converter.feed import onnx_feed
from converter.onnx_export import TARGET_ML_OPSET, TARGET_OPSET, estimator_name, final_step, graph_opsets
from vigil.artifacts import TASK_CLASSIFICATION
from vigil.schema import ServingSchema

ATOL = 1e-5
RTOL = 1e-6  # regression only
CHUNK_ROWS = 512
_VERSIONED = ("scikit-learn", "skl2onnx", "onnxruntime", "onnx")


@dataclass
class ParityReport:
    """Outcome of one parity check; `to_dict` is what parity.json holds."""

    estimator: str  # display name, e.g. "LogisticRegression pipeline"
    estimator_class: str  # the model's class (a pipeline's final step)
    steps: list[str]  # class names of a pipeline's steps, [] for a bare estimator
    task: str
    rows: int
    passed: bool
    reason: str  # "" when passed, else the one-sentence failure
    labels_match: bool | None  # None for regressors
    label_mismatches: int  # excluding ties
    label_ties: int  # rows whose labels differ only because sklearn's top probabilities tie
    max_abs_err: float
    mean_abs_err: float
    max_rel_err: float
    failing_rows: int
    atol: float
    rtol: float
    input_type: str
    opset: int  # the graph's default-domain opset (<= target_opset)
    ml_opset: int | None  # the graph's ai.onnx.ml opset, None if it uses none
    target_opset: int = TARGET_OPSET
    target_ml_opset: int = TARGET_ML_OPSET
    versions: dict[str, str] = field(default_factory=lambda: library_versions())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def library_versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in _VERSIONED}


def open_session(onnx_bytes: bytes) -> Any:
    """A single-threaded CPU ONNX Runtime session (raises if ORT rejects the graph)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # parity is not a benchmark; leave cores to others
    options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def _abs_err(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """|expected - actual| where NaN on both sides counts as equal, on one side as inf."""
    expected = expected.astype(np.float64)
    actual = actual.astype(np.float64)
    err = np.abs(expected - actual)
    both_nan = np.isnan(expected) & np.isnan(actual)
    err[both_nan] = 0.0
    err[np.isnan(err)] = np.inf
    return err


def _labels_equal(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    expected, actual = np.asarray(expected).ravel(), np.asarray(actual).ravel()
    if expected.dtype.kind in "iufb" and actual.dtype.kind in "iufb":
        return expected.astype(np.float64) == actual.astype(np.float64)
    return expected.astype(str) == actual.astype(str)


def _run_chunk(estimator: Any, session: Any, schema: ServingSchema, X: pd.DataFrame) -> dict[str, np.ndarray]:
    wanted = [schema.label_output] + ([schema.probability_output] if schema.probability_output else [])
    outputs = dict(zip(wanted, session.run(wanted, dict(onnx_feed(schema, X)))))
    if schema.task == TASK_CLASSIFICATION:
        return {
            "sk_label": np.asarray(estimator.predict(X)),
            "ort_label": outputs[schema.label_output],
            "sk_values": np.asarray(estimator.predict_proba(X), dtype=np.float64),
            "ort_values": outputs[schema.probability_output],
        }
    values = np.asarray(estimator.predict(X), dtype=np.float64).reshape(len(X), -1)
    return {"sk_values": values, "ort_values": outputs[schema.label_output].reshape(len(X), -1)}


def _collect(estimator: Any, session: Any, schema: ServingSchema, X: pd.DataFrame, progress: bool) -> dict[str, np.ndarray]:
    parts: list[dict[str, np.ndarray]] = []
    with tqdm(total=len(X), desc=f"parity {estimator_name(estimator)} ({_input_type(schema)})", unit="row",
              disable=not progress, leave=False) as bar:
        for start in range(0, len(X), CHUNK_ROWS):
            chunk = X.iloc[start:start + CHUNK_ROWS]
            parts.append(_run_chunk(estimator, session, schema, chunk))
            bar.update(len(chunk))
    return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}


def check_parity(
    estimator: Any,
    onnx_bytes: bytes,
    schema: ServingSchema,
    X: pd.DataFrame,
    atol: float = ATOL,
    rtol: float = RTOL,
    progress: bool = False,
) -> ParityReport:
    """Compare estimator and ONNX predictions on the rows of `X` (feature columns)."""
    name = estimator_name(estimator)
    if len(X) == 0:
        raise ValueError(f"cannot check parity for {name}: no held-out rows")
    X = X[schema.feature_names]
    out = _collect(estimator, open_session(onnx_bytes), schema, X, progress)
    opsets = graph_opsets(onnx.load_from_string(onnx_bytes))
    graph = {"opset": opsets.get("", TARGET_OPSET), "ml_opset": opsets.get("ai.onnx.ml"), **_describe(estimator)}
    classifier = schema.task == TASK_CLASSIFICATION
    if out["sk_values"].shape != out["ort_values"].shape:
        return _shape_failure(name, schema, len(X), out, atol, rtol, graph)

    err = _abs_err(out["sk_values"], out["ort_values"])
    rel = err / np.maximum(np.abs(out["sk_values"]), 1e-12)
    bad_value = (err > atol) if classifier else (err > atol) & (rel > rtol)
    failing = int(bad_value.any(axis=1).sum())
    mismatches, ties = _label_mismatches(out, atol) if classifier else (0, 0)
    report = ParityReport(
        estimator=name, task=schema.task, rows=len(X), passed=True, reason="",
        labels_match=(mismatches == 0) if classifier else None, label_mismatches=mismatches,
        label_ties=ties, max_abs_err=float(err.max()), mean_abs_err=float(err.mean()), max_rel_err=float(rel.max()),
        failing_rows=failing, atol=atol, rtol=rtol, input_type=_input_type(schema), **graph,
    )
    worst = float(err[bad_value].max()) if failing else 0.0  # the worst *failing* value
    report.reason = _failure_reason(report, classifier, worst)
    report.passed = not report.reason
    return report


def _label_mismatches(out: dict[str, np.ndarray], atol: float) -> tuple[int, int]:
    """(rows whose labels differ, of those the rows excused as top-probability ties)."""
    differ = ~_labels_equal(out["sk_label"], out["ort_label"])
    proba = np.sort(out["sk_values"], axis=1)
    tied = (proba[:, -1] - proba[:, -2] <= atol) if proba.shape[1] > 1 else np.zeros(len(proba), bool)
    return int((differ & ~tied).sum()), int((differ & tied).sum())


def _describe(estimator: Any) -> dict[str, Any]:
    steps = [type(step).__name__ for _, step in getattr(estimator, "steps", [])]
    return {"estimator_class": type(final_step(estimator)).__name__, "steps": steps}


def _input_type(schema: ServingSchema) -> str:
    return "+".join(sorted({i.type for i in schema.onnx_inputs}))


def _failure_reason(r: ParityReport, classifier: bool, worst: float) -> str:
    prefix = f"parity failed for {r.estimator}"
    if classifier and r.label_mismatches:
        return f"{prefix}: predicted labels differ on {r.label_mismatches} of {r.rows} rows"
    if r.failing_rows == 0:
        return ""
    if classifier:
        return f"{prefix}: probabilities differ by {worst:.1e} (> {r.atol:g}) on {r.failing_rows} of {r.rows} rows"
    return (f"{prefix}: predictions differ by {worst:.1e} (> {r.atol:g} absolute and "
            f"> {r.rtol:g} relative) on {r.failing_rows} of {r.rows} rows")


def _shape_failure(name: str, schema: ServingSchema, rows: int, out: dict[str, np.ndarray],
                   atol: float, rtol: float, graph: dict[str, Any]) -> ParityReport:
    what = "probabilities" if schema.task == TASK_CLASSIFICATION else "predictions"
    reason = (f"parity failed for {name}: ONNX {what} have shape {out['ort_values'].shape}, "
              f"scikit-learn's {out['sk_values'].shape}")
    return ParityReport(
        estimator=name, task=schema.task, rows=rows, passed=False, reason=reason,
        labels_match=None, label_mismatches=0, label_ties=0, max_abs_err=float("inf"), mean_abs_err=float("inf"),
        max_rel_err=float("inf"), failing_rows=rows, atol=atol, rtol=rtol, input_type=_input_type(schema),
        **graph,
    )
