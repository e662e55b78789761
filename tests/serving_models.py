"""Small converted models for serving tests, made the way the converter makes them.

Each builder fits a scikit-learn model, converts it with skl2onnx (zipmap off) and writes
model.onnx + schema.json (+ parity.json) into a folder, returning what the tests compare
against: the rows and sklearn's own predictions on them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vigil.schema import Feature, OnnxInput, ServingSchema

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass
class BuiltModel:
    folder: Path
    rows: list[Any]  # request rows (lists in feature order)
    labels: list[Any]  # sklearn's predictions on `rows`
    probabilities: np.ndarray | None
    schema: ServingSchema


def _write(folder: Path, onnx_model: Any, schema: ServingSchema) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(onnx_model.SerializeToString())
    schema.save(folder / "schema.json")
    (folder / "parity.json").write_text(json.dumps({"passed": True, "max_abs_err": 1e-6, "rows": 30}))


def build_iris(folder: Path, name: str = "iris", version: str = "1") -> BuiltModel:
    """LogisticRegression on iris, one float input "X"."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    onnx_model = to_onnx(model, X[:1].astype(np.float32), options={id(model): {"zipmap": False}}, target_opset=17)
    schema = ServingSchema(
        model_name=name, model_version=version, task="classification",
        features=[Feature(n, "number") for n in IRIS_FEATURES],
        onnx_inputs=[OnnxInput("X", "float32", IRIS_FEATURES)],
        label_output="label", probability_output="probabilities", classes=[0, 1, 2], opset=17,
    )
    _write(folder, onnx_model, schema)
    rows = X[::10]
    # compare with sklearn on the float32-rounded rows the model actually sees
    seen = rows.astype(np.float32).astype(np.float64)
    return BuiltModel(folder, rows.tolist(), model.predict(seen).tolist(), model.predict_proba(seen), schema)


def build_mixed(folder: Path, name: str = "mixed", version: str = "1") -> BuiltModel:
    """Pipeline(ColumnTransformer(StandardScaler, OneHotEncoder), LogisticRegression): one input per column."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
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
        ("clf", LogisticRegression(max_iter=500)),
    ]).fit(frame, y)
    types = [("age", FloatTensorType([None, 1])), ("income", FloatTensorType([None, 1])),
             ("city", StringTensorType([None, 1])), ("plan", StringTensorType([None, 1]))]
    onnx_model = to_onnx(pipe, initial_types=types, options={id(pipe.steps[-1][1]): {"zipmap": False}},
                         target_opset=17)
    schema = ServingSchema(
        model_name=name, model_version=version, task="classification",
        features=[Feature("age", "number"), Feature("income", "number"), Feature("city", "string"),
                  Feature("plan", "string")],
        onnx_inputs=[OnnxInput("age", "float32", ["age"]), OnnxInput("income", "float32", ["income"]),
                     OnnxInput("city", "string", ["city"]), OnnxInput("plan", "string", ["plan"])],
        label_output="label", probability_output="probabilities", classes=["no", "yes"], opset=17,
    )
    _write(folder, onnx_model, schema)
    sample = frame.iloc[:12].copy()
    for col in ("age", "income"):
        sample[col] = sample[col].astype(np.float32).astype(np.float64)
    return BuiltModel(folder, sample.values.tolist(), pipe.predict(sample).tolist(), pipe.predict_proba(sample), schema)


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
