"""Model quality from joined labels (sklearn.metrics) and concept drift (river ADWIN)."""

from __future__ import annotations

import math
import pickle
from typing import Any, Sequence

import numpy as np
from sklearn import metrics


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def classification_quality(
    y_true: Sequence[Any], y_pred: Sequence[Any], scores: np.ndarray | None, classes: Sequence[Any]
) -> dict[str, float | None]:
    """Accuracy, macro precision/recall/F1 and ROC AUC (binary or one-vs-rest).

    Labels and predictions are compared as strings so a label posted as ``1`` matches a
    prediction of ``"1"``.
    """
    t = [str(v) for v in y_true]
    p = [str(v) for v in y_pred]
    out: dict[str, float | None] = {
        "accuracy": metrics.accuracy_score(t, p),
        "precision": metrics.precision_score(t, p, average="macro", zero_division=0),
        "recall": metrics.recall_score(t, p, average="macro", zero_division=0),
        "f1": metrics.f1_score(t, p, average="macro", zero_division=0),
        "roc_auc": None,
    }
    names = [str(c) for c in classes]
    if scores is not None and len(names) >= 2 and len(set(t)) >= 2 and set(t) <= set(names):
        if len(names) == 2:
            out["roc_auc"] = metrics.roc_auc_score([v == names[1] for v in t], scores[:, 1])
        elif len(set(t)) == len(names):  # one-vs-rest needs every class among the labels
            out["roc_auc"] = metrics.roc_auc_score(t, scores, multi_class="ovr", labels=names)
    return {k: (None if v is None else _finite(v)) for k, v in out.items()}


def regression_quality(y_true: Sequence[float], y_pred: Sequence[float]) -> dict[str, float | None]:
    """MAE, RMSE and R² (R² needs two labels)."""
    t, p = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return {
        "mae": _finite(metrics.mean_absolute_error(t, p)),
        "rmse": _finite(metrics.root_mean_squared_error(t, p)),
        "r2": _finite(metrics.r2_score(t, p)) if len(t) >= 2 else None,
    }


def row_error(task: str, label: Any, prediction: Any) -> float:
    """The per-row error fed to ADWIN: 0/1 misclassification or absolute error."""
    if task == "classification":
        return float(str(label) != str(prediction))
    return abs(float(label) - float(prediction))


class ConceptDrift:
    """ADWIN over one version's error stream; remembers where it fired."""

    def __init__(self, state: bytes | None = None, seen: int = 0) -> None:
        from river.drift import ADWIN

        self.detector = pickle.loads(state) if state else ADWIN()
        self.seen = seen

    def update(self, error: float) -> bool:
        """Feed one row's error; True when ADWIN detects a change at this row."""
        self.seen += 1
        self.detector.update(error)
        return bool(self.detector.drift_detected)

    def state(self) -> bytes:
        return pickle.dumps(self.detector)
