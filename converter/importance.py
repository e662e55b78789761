"""Permutation importance of each feature on the holdout rows, computed at convert time.

The converter is the last place that holds the sklearn estimator (serving runs ONNX), so
it measures how much the holdout score drops when one feature's values are shuffled
(sklearn's `permutation_importance`) and stores it on the version's run as
`vigil/importance.json`. The monitor weighs drift by it: drift on a feature the model
ignores matters less.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from vigil import artifacts as A

MAX_ROWS = 2000  # enough for stable ranks; bounds convert time on big holdouts
REPEATS = 5


def permutation_importance_of(estimator: Any, X: pd.DataFrame, y: Any, task: str, *, repeats: int = REPEATS,
                              seed: int = 0, max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """{"importance": {feature: mean score drop}, "std": {...}, "scoring", "rows", "repeats"}."""
    from sklearn.inspection import permutation_importance

    if len(X) > max_rows:
        picks = np.random.default_rng(seed).choice(len(X), max_rows, replace=False)
        X, y = X.iloc[picks], np.asarray(y)[picks]
    scoring = "accuracy" if task == A.TASK_CLASSIFICATION else "r2"
    result = permutation_importance(estimator, X, np.asarray(y), scoring=scoring, n_repeats=repeats,
                                    random_state=seed)
    names = [str(c) for c in X.columns]
    return {
        "importance": {n: float(v) for n, v in zip(names, result.importances_mean)},
        "std": {n: float(v) for n, v in zip(names, result.importances_std)},
        "scoring": scoring, "rows": int(len(X)), "repeats": repeats,
    }


def importance_json(report: dict[str, Any]) -> bytes:
    """The artifact's bytes."""
    return json.dumps(report, indent=2, sort_keys=True).encode()
