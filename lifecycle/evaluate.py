"""Holdout metrics and the reference sample the monitor compares live traffic with."""

from __future__ import annotations

import pandas as pd
from sklearn import metrics
from sklearn.pipeline import Pipeline

from vigil.artifacts import (
    REFERENCE_PREDICTION_COLUMN,
    REFERENCE_PROBA_PREFIX,
    TASK_CLASSIFICATION,
)


def holdout_metrics(model: Pipeline, task: str, X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """Classification: accuracy, f1/precision/recall (macro), roc_auc; regression: r2, mae, rmse."""
    predicted = model.predict(X)
    if task != TASK_CLASSIFICATION:
        return {
            "r2": float(metrics.r2_score(y, predicted)),
            "mae": float(metrics.mean_absolute_error(y, predicted)),
            "rmse": float(metrics.root_mean_squared_error(y, predicted)),
        }
    scores = {
        "accuracy": float(metrics.accuracy_score(y, predicted)),
        "f1_macro": float(metrics.f1_score(y, predicted, average="macro", zero_division=0)),
        "precision_macro": float(metrics.precision_score(y, predicted, average="macro", zero_division=0)),
        "recall_macro": float(metrics.recall_score(y, predicted, average="macro", zero_division=0)),
    }
    auc = _roc_auc(model, X, y)
    if auc is not None:
        scores["roc_auc"] = auc
    return scores


def _roc_auc(model: Pipeline, X: pd.DataFrame, y: pd.Series) -> float | None:
    # AUC is undefined when the holdout lacks a class (tiny or skewed data): leave it out
    # rather than report a number computed over fewer classes than the model predicts.
    classes = list(model.classes_)
    if set(y.unique()) != set(classes):
        return None
    proba = model.predict_proba(X)
    if len(classes) == 2:
        return float(metrics.roc_auc_score(y, proba[:, 1]))
    return float(metrics.roc_auc_score(y, proba, multi_class="ovr", labels=classes))


def proba_column(label: object) -> str:
    """Reference column name holding the probability of class `label`."""
    return f"{REFERENCE_PROBA_PREFIX}{label}"


def reference_frame(
    model: Pipeline, task: str, X: pd.DataFrame, y: pd.Series, rows: int, seed: int
) -> pd.DataFrame:
    """Up to `rows` training rows: features, target, `prediction`, and `proba_<class>` per class."""
    if len(X) > rows:
        X = X.sample(n=rows, random_state=seed)
        y = y.loc[X.index]
    frame = X.copy()
    frame[y.name] = y
    frame[REFERENCE_PREDICTION_COLUMN] = model.predict(X)
    if task == TASK_CLASSIFICATION:
        proba = model.predict_proba(X)
        for i, label in enumerate(model.classes_):
            frame[proba_column(label)] = proba[:, i]
    return frame.reset_index(drop=True)
