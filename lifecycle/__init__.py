"""Training side of Vigil: `vigil train` fits a scikit-learn model and registers it in MLflow.

Importing the package is cheap (no sklearn, no mlflow): those load when `train` runs,
so the CLI can list `ESTIMATORS` and `DATASETS` in its --help.
"""

from __future__ import annotations

from lifecycle.datasets import DATASETS, load_csv, load_dataset, make_mixed_demo_frame
from lifecycle.errors import TrainError
from lifecycle.estimators import ESTIMATORS, estimator_help
from lifecycle.training import TrainResult, train

__all__ = [
    "DATASETS",
    "ESTIMATORS",
    "TrainError",
    "TrainResult",
    "estimator_help",
    "load_csv",
    "load_dataset",
    "make_mixed_demo_frame",
    "train",
]
