"""`vigil train`: fit a scikit-learn model, log it to MLflow and register a new version.

The registered version carries everything downstream needs (see vigil/artifacts.py):
the MLflow model with its signature, the reference and holdout parquet files, and
tags naming the task, target and holdout metrics.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lifecycle import datasets, estimators
from lifecycle.errors import TrainError
from vigil import artifacts
from vigil.config import Settings

# sklearn's model code and mlflow load inside `train`, keeping `import lifecycle` cheap.
if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

PRIMARY_METRIC = {artifacts.TASK_CLASSIFICATION: "accuracy", artifacts.TASK_REGRESSION: "r2"}
MIN_ROWS = 10
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class TrainResult:
    """What one `vigil train` produced: the registered version and how it scored."""

    name: str
    version: str
    run_id: str
    task: str
    estimator: str
    metrics: dict[str, float] = field(default_factory=dict)
    summary: str = ""


@dataclass(frozen=True)
class TrainingData:
    """Features, target and the facts about them that end up as tags."""

    X: pd.DataFrame
    y: pd.Series
    task: str
    dataset: str  # tag value: "iris" or "csv:<file name>"
    default_name: str


def train(
    settings: Settings,
    dataset: str = "iris",
    csv: Path | None = None,
    target: str | None = None,
    name: str | None = None,
    estimator: str = "auto",
    test_size: float = 0.2,
    seed: int = 0,
    reference_rows: int = 5000,
    task: str | None = None,
    params: dict[str, str] | None = None,
    holdout: pd.DataFrame | None = None,
) -> TrainResult:
    """Train on a bundled dataset or a CSV, then log and register a new model version.

    `params` override the estimator's own settings, e.g. {"n_estimators": "300"}.
    `holdout` (features + target) is a fixed evaluation set: every row of the data is
    trained on and the scores are on these rows, as retraining does with the model's
    evaluation set (lifecycle/fair.py).

    Raises TrainError for anything the user can fix (bad file, column, estimator...).
    """
    from lifecycle import evaluate
    from lifecycle.mlflow_log import log_and_register

    _check_options(test_size, seed, reference_rows)
    data = load_training_data(dataset, csv, target, task)
    name = _model_name(name, data.default_name)
    key = estimators.resolve_estimator(estimator, data.task, data.X)
    check_column_names(data.X, str(data.y.name))

    if holdout is None:
        X_train, X_test, y_train, y_test = _split(data, test_size, seed)
    else:
        X_train, y_train = data.X, data.y
        X_test, y_test, _ = datasets.split_target(holdout, str(data.y.name), data.task, source="the fixed holdout")
        X_test = X_test[list(data.X.columns)]
    model, scores = _fit_and_score(key, data.task, (X_train, y_train), (X_test, y_test), seed, params or {})

    reference = evaluate.reference_frame(model, data.task, X_train, y_train, reference_rows, seed)
    holdout = X_test.assign(**{str(y_test.name): y_test}).reset_index(drop=True)
    params = _params(data, key, test_size, seed, reference_rows, model)
    model_class = type(model.steps[-1][1]).__name__
    summary_tail = f"{model_class}, {_format_scores(scores)} on {len(X_test)} holdout rows"
    registered = log_and_register(
        settings,
        name=name,
        model=model,
        X_train=X_train,
        params=params,
        metrics=scores,
        reference=reference,
        holdout=holdout,
        tags=_version_tags(data, key, scores),
        summary_tail=summary_tail,
    )
    return TrainResult(
        name=name,
        version=registered.version,
        run_id=registered.run_id,
        task=data.task,
        estimator=key,
        metrics=scores,
        summary=f"{name} v{registered.version}: {summary_tail}",
    )


def load_training_data(dataset: str, csv: Path | None, target: str | None, task: str | None) -> TrainingData:
    """The bundled `dataset`, or `csv` with `target` when a CSV is given."""
    if csv is not None:
        if not target:
            raise TrainError("a CSV needs --target naming the column to predict")
        X, y, task = datasets.load_csv(csv, target, task)
        return TrainingData(X, y, task, f"csv:{Path(csv).name}", datasets.sanitize_name(Path(csv).stem))
    if target:
        raise TrainError(f"--target only applies to --csv; the bundled dataset {dataset!r} has its own target")
    X, y, inferred = datasets.load_dataset(dataset)
    if task is not None and task != inferred:
        X, y, task = datasets.split_target(X.assign(**{str(y.name): y}), str(y.name), task, source=dataset)
    else:
        task = inferred
    return TrainingData(X, y, task, dataset, dataset)


def _check_options(test_size: float, seed: int, reference_rows: int) -> None:
    if not 0.0 < test_size < 1.0:
        raise TrainError(f"test size must be a fraction between 0 and 1, got {test_size}")
    if seed < 0:
        raise TrainError(f"seed must be a non-negative integer, got {seed}")
    if reference_rows < 1:
        raise TrainError(f"reference rows must be at least 1, got {reference_rows}")


def _model_name(name: str | None, default: str) -> str:
    if name is None:
        return default
    if not _NAME.match(name):
        raise TrainError(
            f"invalid model name {name!r}; use letters, digits, '.', '_' and '-', starting with a letter or digit"
        )
    return name


def _split(data: TrainingData, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    from sklearn.model_selection import train_test_split

    # Stratify when every class can appear on both sides; tiny classes make that impossible.
    classify = data.task == artifacts.TASK_CLASSIFICATION
    stratify = data.y if classify and data.y.value_counts().min() >= 2 else None
    if len(data.X) < MIN_ROWS:
        raise TrainError(f"training needs at least {MIN_ROWS} rows, the data has {len(data.X)}")
    try:
        X_train, X_test, y_train, y_test = train_test_split(
            data.X, data.y, test_size=test_size, random_state=seed, stratify=stratify
        )
    except ValueError as exc:
        raise TrainError(f"cannot split {len(data.X)} rows with test size {test_size}: {exc}") from None
    if classify and y_train.nunique() < 2:
        raise TrainError("the training split has a single class; use more rows or a smaller test size")
    return X_train, X_test, y_train, y_test


def _fit_and_score(
    key: str,
    task: str,
    train_xy: tuple["pd.DataFrame", "pd.Series"],
    test_xy: tuple["pd.DataFrame", "pd.Series"],
    seed: int,
    params: dict[str, str],
) -> tuple["Pipeline", dict[str, float]]:
    from lifecycle import evaluate

    model = estimators.build_model(key, task, train_xy[0], seed)
    try:
        model.set_params(**{f"model__{k}": _param_value(v) for k, v in params.items()})
    except ValueError as exc:
        valid = ", ".join(sorted(model.steps[-1][1].get_params(deep=False)))
        raise TrainError(f"estimator {key!r} has no such parameter ({exc}); valid: {valid}") from None
    try:
        model.fit(*train_xy)
        return model, evaluate.holdout_metrics(model, task, *test_xy)
    except ValueError as exc:  # sklearn's way of saying the data does not suit the estimator
        # (some, like k-NN, only find out when they first predict)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainError(f"estimator {key!r} cannot fit this data: {first}") from None


def _param_value(raw: str) -> object:
    """'300' -> 300, '0.5' -> 0.5, 'true' -> True, 'none' -> None, anything else stays text."""
    import json

    lowered = raw.strip().lower()
    if lowered in ("none", "null"):
        return None
    try:
        return json.loads(lowered)
    except ValueError:
        return raw


def _params(
    data: TrainingData, key: str, test_size: float, seed: int, reference_rows: int, model: Pipeline
) -> dict[str, str]:
    params = {
        "dataset": data.dataset,
        "task": data.task,
        "target": str(data.y.name),
        "estimator": key,
        "test_size": str(test_size),
        "seed": str(seed),
        "reference_rows": str(reference_rows),
        "rows": str(len(data.X)),
        "features": str(data.X.shape[1]),
    }
    # The final estimator's own settings; MLflow caps a param value at 6000 characters.
    for param, value in model.steps[-1][1].get_params(deep=False).items():
        params[f"model.{param}"] = str(value)[:500]
    return params


def check_column_names(X: "pd.DataFrame", target: str) -> None:
    """Refuse feature names that would collide with the reference sample's own columns."""
    reserved = {target, artifacts.REFERENCE_PREDICTION_COLUMN}
    clash = [c for c in X.columns if c in reserved or c.startswith(artifacts.REFERENCE_PROBA_PREFIX)]
    if clash:
        raise TrainError(
            f"feature column {clash[0]!r} clashes with a reference column "
            f"({artifacts.REFERENCE_PREDICTION_COLUMN!r}, {artifacts.REFERENCE_PROBA_PREFIX}*, "
            "or the target); rename it"
        )


def _version_tags(data: TrainingData, key: str, scores: dict[str, float]) -> dict[str, str]:
    tags = {
        artifacts.TAG_TASK: data.task,
        artifacts.TAG_TARGET: str(data.y.name),
        artifacts.TAG_DATASET: data.dataset,
        artifacts.TAG_ESTIMATOR: key,
        artifacts.TAG_PRIMARY_METRIC: PRIMARY_METRIC[data.task],
    }
    tags.update({f"{artifacts.TAG_METRIC_PREFIX}{m}": repr(v) for m, v in scores.items()})
    return tags


def _format_scores(scores: dict[str, float]) -> str:
    shown = ("accuracy", "f1_macro") if "accuracy" in scores else ("r2", "rmse")
    return " ".join(f"{m}={scores[m]:.3f}" for m in shown)
