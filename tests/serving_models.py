"""Small converted models for serving tests, made by the converter itself and cached per session.

Each builder fits a scikit-learn model once per test process, converts it with the
converter's own functions (float32 inputs, the layout the converter picks for trees, so
the serving tests exercise float32 checks) and proves parity with `check_parity` on
held-out rows: parity.json is the converter's real report, not a claim. Every call
writes model.onnx + schema.json + parity.json into a folder and returns the rows and
sklearn's own predictions on them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vigil.schema import Feature, ServingSchema

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass
class BuiltModel:
    folder: Path
    rows: list[Any]  # request rows (lists in feature order)
    labels: list[Any]  # sklearn's predictions on `rows`
    probabilities: np.ndarray | None
    schema: ServingSchema


@dataclass(frozen=True)
class _Converted:
    onnx_bytes: bytes
    schema: ServingSchema
    parity: dict[str, Any]
    rows: list[Any]
    labels: list[Any]
    probabilities: np.ndarray


def _convert(estimator: Any, features: list[Feature], holdout: pd.DataFrame) -> tuple[bytes, ServingSchema, dict[str, Any]]:
    """float32 conversion through the converter's own steps; refuses a model that fails parity."""
    from converter import check_parity, convert_estimator, onnx_layout
    from converter.onnx_export import build_schema

    inputs = onnx_layout(estimator, features, "float32")
    model = convert_estimator(estimator, inputs, "classification")
    onnx_bytes = model.SerializeToString()
    schema = build_schema(estimator, model, features, inputs, "classification")
    report = check_parity(estimator, onnx_bytes, schema, holdout)
    assert report.passed, report.reason
    return onnx_bytes, schema, report.to_dict()


def _write(folder: Path, converted: _Converted, name: str, version: str) -> BuiltModel:
    folder.mkdir(parents=True, exist_ok=True)
    schema = dataclasses.replace(converted.schema, model_name=name, model_version=version)
    (folder / "model.onnx").write_bytes(converted.onnx_bytes)
    schema.save(folder / "schema.json")
    (folder / "parity.json").write_text(json.dumps(converted.parity))
    return BuiltModel(folder, converted.rows, converted.labels, converted.probabilities, schema)


@functools.lru_cache(maxsize=None)
def _iris() -> _Converted:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(X, columns=IRIS_FEATURES)
    model = LogisticRegression(max_iter=500).fit(frame, y)
    onnx_bytes, schema, parity = _convert(model, [Feature(n, "number") for n in IRIS_FEATURES], frame.iloc[1::3])
    rows = X[::10]
    # compare with sklearn on the float32-rounded rows the model actually sees
    seen = pd.DataFrame(rows.astype(np.float32).astype(np.float64), columns=IRIS_FEATURES)
    return _Converted(onnx_bytes, schema, parity, rows.tolist(), model.predict(seen).tolist(), model.predict_proba(seen))


def build_iris(folder: Path, name: str = "iris", version: str = "1") -> BuiltModel:
    """LogisticRegression on iris, one float32 input "X"."""
    return _write(folder, _iris(), name, version)


@functools.lru_cache(maxsize=None)
def _mixed() -> _Converted:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 200
    frame = pd.DataFrame({
        "age": rng.uniform(18, 80, n), "income": rng.normal(50, 15, n),
        "city": rng.choice(["paris", "oslo", "lima"], n), "plan": rng.choice(["free", "pro"], n),
    })
    y = np.where((frame["age"] > 40) ^ (frame["plan"] == "pro"), "yes", "no")
    pipe = Pipeline([
        ("prep", ColumnTransformer([
            ("num", StandardScaler(), ["age", "income"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city", "plan"]),
        ])),
        ("model", LogisticRegression(max_iter=500)),
    ]).fit(frame, y)
    features = [Feature("age", "number"), Feature("income", "number"), Feature("city", "string"),
                Feature("plan", "string")]
    onnx_bytes, schema, parity = _convert(pipe, features, frame.iloc[::4])
    sample = frame.iloc[:12].copy()
    for col in ("age", "income"):
        sample[col] = sample[col].astype(np.float32).astype(np.float64)
    return _Converted(onnx_bytes, schema, parity, sample.values.tolist(), pipe.predict(sample).tolist(),
                      pipe.predict_proba(sample))


def build_mixed(folder: Path, name: str = "mixed", version: str = "1") -> BuiltModel:
    """Pipeline(ColumnTransformer(StandardScaler, OneHotEncoder), LogisticRegression): one input per column."""
    return _write(folder, _mixed(), name, version)


def register_servable(settings: Any, folder: Path, name: str, alias: str | None = "champion") -> str:
    """Log `folder` as a run's vigil/onnx artifacts and register a servable version; returns it.

    Mirrors what `vigil train` + `vigil convert` leave behind (tags vigil.onnx_uri and
    vigil.servable), using a real SQLite-backed MLflow registry under settings.home.
    """
    from vigil import artifacts
    from vigil.registry import connect, ensure_experiment

    client = connect(settings)
    experiment = ensure_experiment(client, settings)
    run = client.create_run(experiment)
    client.log_artifacts(run.info.run_id, str(folder), artifacts.ARTIFACT_ONNX_DIR)
    client.set_terminated(run.info.run_id)
    if not client.search_registered_models(f"name = '{name}'"):
        client.create_registered_model(name)
    uri = f"{run.info.artifact_uri}/{artifacts.ARTIFACT_ONNX_DIR}"
    version = client.create_model_version(name, uri, run_id=run.info.run_id)
    client.set_model_version_tag(name, version.version, artifacts.TAG_ONNX_URI, uri)
    client.set_model_version_tag(name, version.version, artifacts.TAG_SERVABLE, "true")
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return str(version.version)
