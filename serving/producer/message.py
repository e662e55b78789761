"""The profile message the producer sends: contract version 2 (monitor/CONTRACT.md).

One message carries the whylogs profile of one slice of served rows (one model version,
one monitor window, about a second) and how many rows it covers: no per-row data. The
monitor's half is monitor/wire.py; nothing is imported across, and
tests/test_monitor_contract.py checks that the two agree.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any, Sequence

import numpy as np
import orjson

from vigil.served_batch import ServedBatch

CONTRACT_VERSION = 2
PROFILES_PATH = "/v1/profiles"
PREDICTION_COLUMN = "prediction"
PROBA_PREFIX = "proba_"


def _scalar(value: Any) -> Any:
    """A JSON-safe Python scalar from a numpy one."""
    return value.item() if isinstance(value, np.generic) else value


def proba_names(classes: Sequence[Any]) -> tuple[str, ...]:
    """The profile's probability columns, `proba_<class>`, in `classes` order."""
    return tuple(f"{PROBA_PREFIX}{_scalar(c)}" for c in classes)


def profiled_columns(batch: ServedBatch) -> dict[Any, np.ndarray]:
    """What is profiled of a batch: its features, `prediction`, and the probabilities as one
    [rows, classes] entry keyed by the `proba_<class>` names (ProfileAccumulator's matrix key).

    Classifier labels are profiled as categories even when they are ints (the profile
    builder is told so); regressor values as numbers.
    """
    columns: dict[Any, np.ndarray] = dict(batch.columns)
    columns[PREDICTION_COLUMN] = np.asarray(batch.predictions)
    if batch.scores is not None and len(batch.classes):
        columns[proba_names(batch.classes)] = np.asarray(batch.scores).reshape(batch.rows, len(batch.classes))
    return columns


def categorical_outputs(task: str) -> frozenset[str]:
    """Columns the builder must profile as strings: the predicted label of a classifier."""
    return frozenset({PREDICTION_COLUMN}) if task == "classification" else frozenset()


def profile_message(*, model: str, version: str, task: str, classes: Sequence[Any], timestamp: float, rows: int,
                    profile: bytes, producer: str = "", batch_id: str | None = None) -> bytes:
    """The JSON body of one contract-v2 message."""
    return orjson.dumps({
        "v": CONTRACT_VERSION,
        "batch_id": batch_id or uuid.uuid4().hex,
        "producer": producer,
        "model": model,
        "version": str(version),
        "task": task,
        "timestamp": float(timestamp),
        "rows": int(rows),
        "classes": [_scalar(c) for c in classes],
        "profile": base64.b64encode(profile).decode("ascii"),
    })


def batch_message(batch: ServedBatch, producer: str = "") -> bytes:
    """One batch profiled on its own as a contract-v2 message (the slices do this per second)."""
    from vigil.profile_builder import ProfileAccumulator

    accumulator = ProfileAccumulator(categorical=categorical_outputs(batch.task))
    accumulator.append(profiled_columns(batch))
    view = accumulator.build(batch.timestamp)
    assert view is not None
    return profile_message(model=batch.model, version=batch.version, task=batch.task, classes=batch.classes,
                           timestamp=batch.timestamp, rows=batch.rows, profile=view.serialize(), producer=producer,
                           batch_id=batch.batch_id)
