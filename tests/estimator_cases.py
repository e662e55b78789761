"""The estimators the converter supports, each with a bundled (or generated) dataset.

Shared by the converter's own parity test and the served-parity test, which checks the
same models independently, through the serving runtime.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from vigil import artifacts as A
from vigil.schema import Feature

# ---------------------------------------------------------------- data


def _toy(name: str, rows: int | None = None) -> tuple[pd.DataFrame, pd.Series]:
    data = getattr(datasets, f"load_{name}")(as_frame=True)
    X, y = data.data, data.target
    if rows is not None:  # SVC/KNN on all of breast_cancer would only cost time
        X, y = X.iloc[:rows], y.iloc[:rows]
    return X, y


def _mixed(regression: bool, rows: int = 240) -> tuple[pd.DataFrame, pd.Series]:
    """Numeric + integer + string columns, the shape `vigil train` makes from a CSV."""
    rng = np.random.default_rng(7)
    X = pd.DataFrame({
        "height (cm)": rng.normal(170, 10, rows),  # skl2onnx renames it in the graph
        "visits": rng.integers(0, 20, rows),
        "color": rng.choice(["red", "green", "blue"], rows),
        "size": rng.choice(["S", "M", "L", "XL"], rows),
    })
    y = 0.1 * X["height (cm)"] + 0.5 * X.visits + (X.color == "red") * 3 + rng.normal(0, 0.5, rows)
    return X, (pd.Series(y) if regression else pd.Series(np.where(y > y.median(), "high", "low")))


def _mixed_pipeline(final: object) -> Pipeline:
    prep = ColumnTransformer([
        ("num", StandardScaler(), ["height (cm)", "visits"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["color", "size"]),
    ])
    return Pipeline([("prep", prep), ("model", final)])


def _features(X: pd.DataFrame) -> list[Feature]:
    def kind(dtype: object) -> str:
        if pd.api.types.is_integer_dtype(dtype):
            return "integer"
        return "number" if pd.api.types.is_float_dtype(dtype) else "string"

    return [Feature(str(c), kind(X[c].dtype)) for c in X.columns]  # type: ignore[arg-type]


C, R = A.TASK_CLASSIFICATION, A.TASK_REGRESSION
CASES = {
    "logreg-iris": (lambda: _toy("iris"), lambda: LogisticRegression(max_iter=500), C),
    "scaled-logreg-binary": (lambda: _toy("breast_cancer"), lambda: make_pipeline(StandardScaler(), LogisticRegression()), C),
    "forest-wine": (lambda: _toy("wine"), lambda: RandomForestClassifier(n_estimators=15, random_state=0), C),
    "extratrees-iris": (lambda: _toy("iris"), lambda: ExtraTreesClassifier(n_estimators=15, random_state=0), C),
    "gbc-iris": (lambda: _toy("iris"), lambda: GradientBoostingClassifier(n_estimators=15, random_state=0), C),
    "hgb-binary": (lambda: _toy("breast_cancer"), lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0), C),
    "hgb-wine": (lambda: _toy("wine"), lambda: HistGradientBoostingClassifier(max_iter=20, random_state=0), C),
    "svc-binary": (lambda: _toy("breast_cancer", 200), lambda: SVC(probability=True, random_state=0), C),
    # sklearn 1.9 deprecates SVC(probability=True) in favour of this:
    "calibrated-svc": (lambda: _toy("breast_cancer", 200), lambda: CalibratedClassifierCV(SVC(), ensemble=False), C),
    "knn-wine": (lambda: _toy("wine"), lambda: KNeighborsClassifier(), C),
    "mlp-iris": (lambda: _toy("iris"), lambda: MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, random_state=0), C),
    "linreg-diabetes": (lambda: _toy("diabetes"), LinearRegression, R),
    "ridge-diabetes": (lambda: _toy("diabetes"), Ridge, R),
    "gbr-diabetes": (lambda: _toy("diabetes"), lambda: GradientBoostingRegressor(n_estimators=20, random_state=0), R),
    "mixed-logreg": (lambda: _mixed(False), lambda: _mixed_pipeline(LogisticRegression(max_iter=500)), C),
    "mixed-ridge": (lambda: _mixed(True), lambda: _mixed_pipeline(Ridge()), R),
    # Trees behind a scaler: float32 input would scale differently from sklearn.
    "mixed-forest": (lambda: _mixed(False, 400), lambda: _mixed_pipeline(RandomForestClassifier(n_estimators=20, random_state=0)), C),
    "mixed-gbr": (lambda: _mixed(True), lambda: _mixed_pipeline(GradientBoostingRegressor(n_estimators=20, random_state=0)), R),
}
