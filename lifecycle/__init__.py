"""Training and lifecycle: `vigil train` registers versions; stages, gate, rollback, retraining.

Stages map onto registry aliases (see lifecycle/stages.py): staging = `challenger`,
production = `champion`; moves are recorded on the registry as `vigil.move.<n>` tags.

Importing the package is cheap (no sklearn, no mlflow): those load when `train` runs,
so the CLI can list `ESTIMATORS` and `DATASETS` in its --help.
"""

from __future__ import annotations

from lifecycle.datasets import DATASETS, load_csv, load_dataset, make_mixed_demo_frame
from lifecycle.errors import GateRefused, LifecycleError, RetrainBusy, TrainError
from lifecycle.estimators import ESTIMATORS, estimator_help
from lifecycle.training import TrainResult, train

# The lifecycle functions import mlflow only when called; the modules themselves are light.
from lifecycle.moves import VersionRow, archive, demote, promote, rollback, versions  # noqa: E402
from lifecycle.stages import Move  # noqa: E402

__all__ = [
    "DATASETS",
    "GateRefused",
    "LifecycleError",
    "Move",
    "RetrainBusy",
    "VersionRow",
    "archive",
    "demote",
    "promote",
    "rollback",
    "versions",
    "ESTIMATORS",
    "TrainError",
    "TrainResult",
    "estimator_help",
    "load_csv",
    "load_dataset",
    "make_mixed_demo_frame",
    "train",
]
