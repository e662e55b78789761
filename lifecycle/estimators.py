"""The estimators `vigil train` offers, and how each becomes a fitted-ready pipeline.

Every choice here must stay convertible by skl2onnx: dense one-hot output (tree
models and the ONNX graph both want dense input), no imputers, no custom
transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from lifecycle.errors import TrainError
from vigil.artifacts import TASK_CLASSIFICATION, TASK_REGRESSION

# sklearn and pandas are imported where used: the CLI reads ESTIMATORS for its --help.
if TYPE_CHECKING:
    import pandas as pd
    from sklearn.base import BaseEstimator
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

AUTO = "auto"
PIPELINE = "pipeline"

Factory = Callable[[int], "BaseEstimator"]


@dataclass(frozen=True)
class EstimatorSpec:
    """One choice for `--estimator`: what it is, which tasks it serves, how to build it."""

    description: str
    factories: dict[str, Factory]
    scaled: bool = False  # needs standardised numeric inputs to work well

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.factories)


def _logreg(seed: int) -> BaseEstimator:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=1000, random_state=seed)


def _ridge(seed: int) -> BaseEstimator:
    from sklearn.linear_model import Ridge

    return Ridge(random_state=seed)


def _linear(seed: int) -> BaseEstimator:
    from sklearn.linear_model import LinearRegression

    return LinearRegression()


def _forest(seed: int, task: str) -> BaseEstimator:
    from sklearn import ensemble

    cls = ensemble.RandomForestClassifier if task == TASK_CLASSIFICATION else ensemble.RandomForestRegressor
    return cls(n_estimators=100, random_state=seed, n_jobs=1)


def _extra_trees(seed: int) -> BaseEstimator:
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(n_estimators=100, random_state=seed, n_jobs=1)


def _boosting(seed: int, task: str) -> BaseEstimator:
    from sklearn import ensemble

    cls = ensemble.GradientBoostingClassifier if task == TASK_CLASSIFICATION else ensemble.GradientBoostingRegressor
    return cls(random_state=seed)


def _hist_boosting(seed: int) -> BaseEstimator:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=seed)


def _svc(seed: int) -> BaseEstimator:
    from sklearn.svm import SVC

    return SVC(probability=True, random_state=seed)


def _knn(seed: int) -> BaseEstimator:
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=5)


def _mlp(seed: int) -> BaseEstimator:
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=(32,), max_iter=2000, random_state=seed)


C, R = TASK_CLASSIFICATION, TASK_REGRESSION

ESTIMATORS: dict[str, EstimatorSpec] = {
    "logreg": EstimatorSpec("StandardScaler + LogisticRegression (classification)", {C: _logreg}, scaled=True),
    "random-forest": EstimatorSpec(
        "random forest, 100 trees", {C: lambda s: _forest(s, C), R: lambda s: _forest(s, R)}
    ),
    "extra-trees": EstimatorSpec("extremely randomised trees, 100 trees (classification)", {C: _extra_trees}),
    "gradient-boosting": EstimatorSpec(
        "gradient boosted trees", {C: lambda s: _boosting(s, C), R: lambda s: _boosting(s, R)}
    ),
    "hist-gradient-boosting": EstimatorSpec("histogram gradient boosting (classification)", {C: _hist_boosting}),
    "svc": EstimatorSpec("RBF support vector classifier with probabilities", {C: _svc}, scaled=True),
    "knn": EstimatorSpec("5-nearest-neighbours classifier", {C: _knn}, scaled=True),
    "mlp": EstimatorSpec("small neural network, one hidden layer of 32 (classification)", {C: _mlp}, scaled=True),
    "linear": EstimatorSpec("ordinary least squares (regression)", {R: _linear}),
    "ridge": EstimatorSpec("StandardScaler + Ridge (regression)", {R: _ridge}, scaled=True),
    PIPELINE: EstimatorSpec(
        "scale numbers + one-hot encode text, then LogisticRegression / Ridge",
        {C: _logreg, R: _ridge},
        scaled=True,
    ),
}


def estimator_help() -> str:
    """One line per estimator, for the CLI's --help."""
    lines = [f"{AUTO}: logreg/ridge for numeric data, {PIPELINE} when there are text columns"]
    lines += [f"{key}: {spec.description}" for key, spec in ESTIMATORS.items()]
    return "\n".join(lines)


def resolve_estimator(key: str, task: str, X: pd.DataFrame) -> str:
    """The concrete estimator key for `key` (resolving "auto"), checked against the task."""
    if key == AUTO:
        if text_columns(X):
            return PIPELINE
        return "logreg" if task == TASK_CLASSIFICATION else "ridge"
    spec = ESTIMATORS.get(key)
    if spec is None:
        raise TrainError(f"unknown estimator {key!r}; choose one of {', '.join([AUTO, *ESTIMATORS])}")
    if task not in spec.tasks:
        valid = [AUTO, *(k for k, s in ESTIMATORS.items() if task in s.tasks)]
        raise TrainError(f"estimator {key!r} does not do {task}; for {task} choose one of {', '.join(valid)}")
    return key


def build_model(key: str, task: str, X: pd.DataFrame, seed: int) -> Pipeline:
    """An unfitted Pipeline: the right preprocessing for X's columns, then the estimator.

    Text columns always go through the ColumnTransformer (numbers scaled, text
    one-hot encoded), whichever estimator was chosen; numeric-only data gets a plain
    StandardScaler for the estimators that need one, or the ColumnTransformer for
    `pipeline` (so `pipeline` means the same graph shape for every input).
    """
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    spec = ESTIMATORS[key]
    estimator = spec.factories[task](seed)
    text = text_columns(X)
    if text or key == PIPELINE:
        numeric = [c for c in X.columns if c not in text]
        steps = [("preprocess", _column_transformer(numeric, text)), ("model", estimator)]
    elif spec.scaled:
        steps = [("scale", StandardScaler()), ("model", estimator)]
    else:
        steps = [("model", estimator)]
    return Pipeline(steps)


def text_columns(X: pd.DataFrame) -> list[str]:
    """Names of the feature columns holding text (everything non-numeric after loading)."""
    from pandas.api.types import is_numeric_dtype

    return [c for c in X.columns if not is_numeric_dtype(X[c])]


def _column_transformer(numeric: list[str], text: list[str]) -> ColumnTransformer:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    transformers = []
    if numeric:
        transformers.append(("numeric", StandardScaler(), numeric))
    if text:
        # Unknown categories at serving time become all-zero rows instead of errors.
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        transformers.append(("text", encoder, text))
    return ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
