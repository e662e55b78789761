"""Training data: sklearn's bundled datasets, user CSVs and a mixed-type demo frame.

Every loader returns features with a normalised dtype per column — float64 for
numbers, Python ``str`` in an object column for text — because those dtypes become
the MLflow signature, and the signature is the contract the converter and the
service build on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lifecycle.errors import TrainError
from vigil.artifacts import TASK_CLASSIFICATION, TASK_REGRESSION

TASKS = (TASK_CLASSIFICATION, TASK_REGRESSION)
# An integer-valued numeric target with at most this many distinct values is a label.
MAX_CLASSES_FOR_NUMERIC_TARGET = 20
DEMO_TARGET = "target"


@dataclass(frozen=True)
class _Bundled:
    loader: Callable[..., object]
    task: str


def _bundled() -> dict[str, _Bundled]:
    from sklearn import datasets

    return {
        "iris": _Bundled(datasets.load_iris, TASK_CLASSIFICATION),
        "breast_cancer": _Bundled(datasets.load_breast_cancer, TASK_CLASSIFICATION),
        "wine": _Bundled(datasets.load_wine, TASK_CLASSIFICATION),
        "diabetes": _Bundled(datasets.load_diabetes, TASK_REGRESSION),
    }


DATASETS: dict[str, str] = {
    "iris": "iris flowers, 150 rows, 4 numeric features, 3 classes",
    "breast_cancer": "breast cancer diagnosis, 569 rows, 30 numeric features, 2 classes",
    "wine": "wine cultivars, 178 rows, 13 numeric features, 3 classes",
    "diabetes": "diabetes progression, 442 rows, 10 numeric features, regression",
}


def load_dataset(name: str) -> tuple[pd.DataFrame, pd.Series, str]:
    """A bundled sklearn dataset (offline) as (features, target, task)."""
    spec = _bundled().get(name)
    if spec is None:
        raise TrainError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} or pass a CSV file")
    bunch = spec.loader(as_frame=True)
    # Column names stay as sklearn gives them ("sepal length (cm)"): they are the API's feature names.
    X = normalize_features(bunch.data)
    y = bunch.target.rename("target")
    y = y.astype("int64") if spec.task == TASK_CLASSIFICATION else y.astype("float64")
    return X, y, spec.task


def load_csv(path: Path | str, target: str, task: str | None = None) -> tuple[pd.DataFrame, pd.Series, str]:
    """A user CSV as (features, target, task); the task is inferred unless given."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"CSV file not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TrainError(f"cannot read {path} as CSV: {str(exc).strip().splitlines()[0]}") from None
    return split_target(frame, target, task, source=path.name)


def split_target(
    frame: pd.DataFrame, target: str, task: str | None = None, source: str = "the data"
) -> tuple[pd.DataFrame, pd.Series, str]:
    """Separate `target` from the features, check both, and settle the task."""
    if target not in frame.columns:
        raise TrainError(f"target column {target!r} is not in {source}; columns are: {', '.join(map(str, frame.columns))}")
    features = frame.drop(columns=[target])
    if features.shape[1] == 0:
        raise TrainError(f"{source} has no feature columns besides the target {target!r}")
    if len(frame) == 0:
        raise TrainError(f"{source} has no rows")
    _reject_missing(frame, source)
    task = _check_task(frame[target], task)
    y = _normalize_target(frame[target], task)
    return normalize_features(features), y, task


def infer_task(y: pd.Series) -> str:
    """Classification for text or few distinct integer values, regression otherwise."""
    if not _is_numeric(y):
        return TASK_CLASSIFICATION
    few = y.nunique() <= MAX_CLASSES_FOR_NUMERIC_TARGET
    return TASK_CLASSIFICATION if few and _integer_valued(y) else TASK_REGRESSION


def normalize_features(X: pd.DataFrame) -> pd.DataFrame:
    """Numbers as float64, text as Python str (object dtype); anything else is refused.

    pandas 3 reads text into its own string dtype; plain ``str`` objects are what
    both MLflow's signature inference ("string") and ONNX string tensors expect.
    """
    columns = {}
    for name in X.columns:
        col = X[name]
        if not isinstance(name, str):
            raise TrainError(f"feature column names must be text, got {name!r}")
        if _is_numeric(col):
            columns[name] = col.astype("float64")
        elif _is_text(col):
            columns[name] = pd.Series([str(v) for v in col], index=col.index, dtype=object)
        else:
            raise TrainError(f"feature column {name!r} has unsupported type {col.dtype}; use numbers or text")
    return pd.DataFrame(columns, index=X.index)


def sanitize_name(raw: str) -> str:
    """A registry-friendly model name from a file stem: lowercase letters, digits, '-' and '_'."""
    name = re.sub(r"[^a-z0-9_-]+", "-", raw.lower()).strip("-_")
    if not name:
        raise TrainError(f"cannot derive a model name from {raw!r}; pass a name explicitly")
    return name


def make_mixed_demo_frame(n: int = 500, seed: int = 0, task: str = TASK_CLASSIFICATION) -> pd.DataFrame:
    """A learnable frame of numeric and string features plus a ``target`` column.

    There is no offline dataset with text columns, so tests and demos use this one.
    Classification targets are the strings "yes"/"no"; regression targets are floats.
    """
    if task not in TASKS:
        raise TrainError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    rng = np.random.default_rng(seed)
    plans = np.array(["basic", "plus", "pro"])
    regions = np.array(["north", "south", "east", "west"])
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype("float64"),
            "income": rng.normal(50_000, 15_000, n).round(2),
            "plan": pd.Series(plans[rng.integers(0, 3, n)], dtype=object),
            "region": pd.Series(regions[rng.integers(0, 4, n)], dtype=object),
        }
    )
    plan_effect = frame["plan"].map({"basic": -1.0, "plus": 0.0, "pro": 1.5}).to_numpy()
    region_effect = frame["region"].map({"north": 0.5, "south": -0.5, "east": 0.0, "west": 0.2}).to_numpy()
    score = 0.04 * (frame["age"] - 50) + (frame["income"] - 50_000) / 20_000 + plan_effect + region_effect
    noise = rng.normal(0, 0.5, n)
    if task == TASK_CLASSIFICATION:
        frame[DEMO_TARGET] = pd.Series(np.where(score + noise > 0, "yes", "no"), dtype=object)
    else:
        frame[DEMO_TARGET] = (100 + 20 * score + 5 * noise).round(3)
    return frame


def _is_numeric(col: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)


def _integer_valued(col: pd.Series) -> bool:
    values = col.to_numpy(dtype="float64")
    return bool(np.all(values == np.round(values)))


def _is_text(col: pd.Series) -> bool:
    return (
        pd.api.types.is_string_dtype(col)
        or isinstance(col.dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(col)
    )


def _reject_missing(frame: pd.DataFrame, source: str) -> None:
    # The ONNX graph has no imputer, so training on gaps would hide a serving failure.
    missing = frame.isna().sum()
    missing = missing[missing > 0]
    if len(missing):
        listed = ", ".join(f"{name!r} ({count})" for name, count in missing.items())
        raise TrainError(f"{source} has missing values in {listed}; fill or drop them before training")


def _check_task(y: pd.Series, task: str | None) -> str:
    if task is None:
        task = infer_task(y)
    elif task not in TASKS:
        raise TrainError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    if task == TASK_REGRESSION and not _is_numeric(y):
        raise TrainError(f"target {y.name!r} holds text, so it cannot be a regression target")
    if task == TASK_CLASSIFICATION and _is_numeric(y) and not _integer_valued(y):
        raise TrainError(f"target {y.name!r} has non-integer numbers, so it cannot be a classification target")
    if task == TASK_CLASSIFICATION and y.nunique() < 2:
        raise TrainError(f"target {y.name!r} has a single class ({y.iloc[0]!r}); a classifier needs at least two")
    return task


def _normalize_target(y: pd.Series, task: str) -> pd.Series:
    if task == TASK_REGRESSION:
        return y.astype("float64")
    if _is_numeric(y):  # integer-valued, checked by _check_task
        return y.astype("int64")
    return pd.Series([str(v) for v in y], index=y.index, name=y.name, dtype=object)
