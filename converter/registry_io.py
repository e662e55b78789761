"""The MLflow side of `vigil convert`: read a model version, write its ONNX back.

Reads what `vigil train` left on the version (sklearn model + signature, the run's
held-out rows, task/target tags), runs the pure core (`converter.core`), then logs
model.onnx / schema.json / parity.json to the version's run and tags the version with
the outcome. A version that cannot be converted or fails parity is still tagged
`vigil.servable=false` with the reason before `ConversionError` is raised.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from converter.core import Converted, convert_and_check
from converter.onnx_export import ConversionError
from converter.parity import ATOL, RTOL, ParityReport
from vigil import artifacts as A
from vigil.config import Settings
from vigil.registry import ModelRef, connect, resolve_version
from vigil.schema import Feature, ServingSchema

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

# MLflow signature column types -> serving feature types. Booleans travel as 0/1.
_FEATURE_TYPES = {"double": "number", "float": "number", "long": "integer",
                  "integer": "integer", "boolean": "integer", "string": "string"}


@dataclass
class ConversionReport:
    """What `convert_version` did, for the CLI to print."""

    model_name: str
    model_version: str
    run_id: str
    onnx_uri: str
    schema: ServingSchema
    parity: ParityReport
    seconds: float

    def summary(self) -> str:
        p = self.parity
        return (f"models:/{self.model_name}/{self.model_version} ({p.estimator}) -> ONNX opset {p.opset}, "
                f"{p.input_type} input; parity passed on {p.rows} rows, max abs err {p.max_abs_err:.1e}; "
                f"{self.onnx_uri} in {self.seconds:.1f}s")


@dataclass
class _Source:
    """Everything read from the registry for one version."""

    estimator: Any
    features: list[Feature]
    task: str
    target: str
    holdout: pd.DataFrame
    run_id: str
    labels: Any = None  # the holdout's target column, when it has one


def convert_version(
    settings: Settings,
    ref: ModelRef | str,
    progress: bool = True,
    atol: float = ATOL,
    rtol: float = RTOL,
) -> ConversionReport:
    """Convert a registered model version to ONNX, prove parity, log and tag the result.

    Raises RegistryError if `ref` does not resolve, ConversionError (one-sentence
    message) if the model cannot be converted or fails parity.
    """
    started = time.perf_counter()
    client = connect(settings)
    version = resolve_version(client, ref)
    try:
        source = _read_source(client, settings, version)
        converted = convert_and_check(source.estimator, source.features, source.task, source.holdout,
                                      target=source.target, atol=atol, rtol=rtol, progress=progress)
    except ConversionError as exc:
        _tag_unservable(client, version, str(exc), parity=None)
        raise
    schema = dataclasses.replace(converted.schema, model_name=version.name, model_version=str(version.version))
    converted = Converted(converted.onnx_bytes, schema, converted.parity)
    if not converted.parity.passed:
        _log_files(client, source.run_id, {A.PARITY_FILE: _json(converted.parity.to_dict())})
        _tag_unservable(client, version, converted.parity.reason, parity=converted.parity)
        raise ConversionError(converted.parity.reason)
    onnx_uri = _publish(client, version, source.run_id, converted)
    _log_importance(client, source)
    return ConversionReport(version.name, str(version.version), source.run_id, onnx_uri, schema,
                            converted.parity, time.perf_counter() - started)


def _read_source(client: "MlflowClient", settings: Settings, version: "ModelVersion") -> _Source:
    """Load the estimator, its features, task, target and held-out rows."""
    uri = f"models:/{version.name}/{version.version}"
    run_id = version.tags.get(A.TAG_RUN_ID) or version.run_id
    if not run_id:
        raise ConversionError(f"{uri} has no run (tag {A.TAG_RUN_ID} and run_id are empty), so no held-out rows")
    estimator = _load_estimator(uri)
    features = features_from_signature(uri)
    task = version.tags.get(A.TAG_TASK) or _infer_task(estimator)
    target = version.tags.get(A.TAG_TARGET) or "target"
    holdout, labels = _load_holdout(settings, run_id, features, uri, target)
    return _Source(estimator, features, task, target, holdout, run_id, labels)


def _load_estimator(uri: str) -> Any:
    import mlflow.sklearn

    try:
        return mlflow.sklearn.load_model(uri)
    except Exception as exc:  # MLflow raises several types for a missing/foreign flavor
        raise ConversionError(f"cannot load {uri} as a scikit-learn model: {_first_line(exc)}") from exc


def _infer_task(estimator: Any) -> str:
    from sklearn.base import is_classifier

    return A.TASK_CLASSIFICATION if is_classifier(estimator) else A.TASK_REGRESSION


def features_from_signature(uri: str) -> list[Feature]:
    """Serving features (names + types, in order) from the model's MLflow signature."""
    from mlflow.models import get_model_info

    signature = get_model_info(uri).signature
    if signature is None or signature.inputs is None:
        raise ConversionError(f"{uri} was logged without a signature; log it with infer_signature(X_train, ...)")
    if signature.inputs.is_tensor_spec():
        raise ConversionError(f"{uri} has a tensor signature; Vigil needs named columns (log a DataFrame signature)")
    features = []
    for column in signature.inputs.inputs:
        kind = _FEATURE_TYPES.get(getattr(column.type, "name", str(column.type)))
        if column.name is None or kind is None:
            raise ConversionError(f"{uri} input column {column.name!r} has unsupported type {column.type}")
        features.append(Feature(column.name, kind))  # type: ignore[arg-type]
    return features


def _load_holdout(settings: Settings, run_id: str, features: list[Feature], uri: str,
                  target: str) -> tuple[pd.DataFrame, Any]:
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=A.ARTIFACT_HOLDOUT,
                                                       dst_path=tmp, tracking_uri=settings.mlflow_uri)
            frame = pd.read_parquet(path)
        except Exception as exc:
            raise ConversionError(f"cannot read {A.ARTIFACT_HOLDOUT} of run {run_id} for {uri}: "
                                  f"{_first_line(exc)}") from exc
    missing = [f.name for f in features if f.name not in frame.columns]
    if missing:
        raise ConversionError(f"{A.ARTIFACT_HOLDOUT} of {uri} lacks feature column(s): {', '.join(missing)}")
    if frame.empty:
        raise ConversionError(f"{A.ARTIFACT_HOLDOUT} of {uri} has no rows to prove parity on")
    labels = frame[target] if target in frame.columns else None
    return frame[[f.name for f in features]], labels


def _publish(client: "MlflowClient", version: "ModelVersion", run_id: str, converted: Converted) -> str:
    """Log the three artifacts to the run and tag the version servable."""
    _log_files(client, run_id, {
        A.ONNX_FILE: converted.onnx_bytes,
        A.SCHEMA_FILE: _json(converted.schema.to_dict()),
        A.PARITY_FILE: _json(converted.parity.to_dict()),
    })
    onnx_uri = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{A.ARTIFACT_ONNX_DIR}"
    _set_tags(client, version, {
        A.TAG_ONNX_URI: onnx_uri,
        A.TAG_PARITY: "passed",
        A.TAG_PARITY_MAX_ABS_ERR: _num(converted.parity.max_abs_err),
        A.TAG_OPSET: str(converted.parity.opset),
        A.TAG_SERVABLE: "true",
        A.TAG_SERVABLE_REASON: "",
    })
    return onnx_uri


def _log_importance(client: "MlflowClient", source: _Source) -> None:
    """Store permutation importance on the run; a model it cannot score still converts (equal weights)."""
    import logging

    from converter.importance import importance_json, permutation_importance_of

    if source.labels is None:
        return
    try:
        report = permutation_importance_of(source.estimator, source.holdout, source.labels, source.task)
    except Exception as exc:  # sklearn raises many types on odd estimators; importance is optional
        logging.getLogger(__name__).warning("no permutation importance for run %s: %s", source.run_id, _first_line(exc))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(A.ARTIFACT_IMPORTANCE).name
        path.write_bytes(importance_json(report))
        client.log_artifact(source.run_id, str(path), artifact_path=str(Path(A.ARTIFACT_IMPORTANCE).parent))


def _tag_unservable(client: "MlflowClient", version: "ModelVersion", reason: str, parity: ParityReport | None) -> None:
    """Mark the version not servable, and drop any ONNX URI left by an older conversion."""
    tags = {A.TAG_SERVABLE: "false", A.TAG_SERVABLE_REASON: reason, A.TAG_PARITY: "failed"}
    if parity is not None:
        tags |= {A.TAG_PARITY_MAX_ABS_ERR: _num(parity.max_abs_err), A.TAG_OPSET: str(parity.opset)}
    _set_tags(client, version, tags)
    if A.TAG_ONNX_URI in version.tags:
        client.delete_model_version_tag(version.name, version.version, A.TAG_ONNX_URI)


def _set_tags(client: "MlflowClient", version: "ModelVersion", tags: dict[str, str]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(version.name, version.version, key, value)


def _log_files(client: "MlflowClient", run_id: str, files: dict[str, bytes]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            (Path(tmp) / name).write_bytes(data)
        client.log_artifacts(run_id, tmp, artifact_path=A.ARTIFACT_ONNX_DIR)


def _json(data: dict[str, Any]) -> bytes:
    """Strict JSON: non-finite errors (a shape mismatch) become null, not `Infinity`."""
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in data.items()}
    return json.dumps(clean, indent=2).encode()


def _num(value: float) -> str:
    return f"{value:.3g}"


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "message", "") or exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]
