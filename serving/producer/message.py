"""The contract-v1 message for one (merged) served batch: its whylogs profile plus per-row data.

The monitor's half of the contract is monitor/wire.py (monitor/CONTRACT.md); nothing is
imported across, and tests/test_monitor_contract.py checks that the two agree.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from vigil.served_batch import ServedBatch, widen_float32

CONTRACT_VERSION = 1
PROFILES_PATH = "/v1/profiles"
PREDICTION_COLUMN = "prediction"
PROBA_PREFIX = "proba_"


def _scalar(value: Any) -> Any:
    """A JSON-safe Python scalar from a numpy one."""
    return value.item() if isinstance(value, np.generic) else value


def profile_frame(batch: ServedBatch) -> "Any":
    """The DataFrame that is profiled: features, `prediction`, `proba_<class>` columns."""
    import pandas as pd

    frame = pd.DataFrame(batch.columns).reset_index(drop=True).copy()
    for column in frame.columns:
        if frame[column].dtype == np.float32:
            frame[column] = widen_float32(frame[column].to_numpy())
    preds = list(batch.predictions)
    if batch.task == "classification":
        # Labels are categories even when they are ints: profile them as strings, the
        # same conversion the monitor applies to the reference predictions.
        frame[PREDICTION_COLUMN] = [str(_scalar(p)) for p in preds]
    else:
        frame[PREDICTION_COLUMN] = np.asarray(preds, dtype=float)
    if batch.scores is not None and len(batch.classes):
        scores = np.asarray(batch.scores, dtype=float).reshape(len(preds), len(batch.classes))
        for i, cls in enumerate(batch.classes):
            frame[f"{PROBA_PREFIX}{_scalar(cls)}"] = scores[:, i]
    return frame


def build_message(batch: ServedBatch, producer: str = "") -> bytes:
    """The contract-v1 JSON body for one batch (profiling happens here: ~5-10 ms)."""
    from vigil.whylogs_compat import profile

    frame = profile_frame(batch)
    rows = len(frame)
    ids = batch.ids()
    if len(ids) != rows:
        raise ValueError(f"batch {batch.batch_id}: {len(ids)} request ids for {rows} rows")
    scores = None
    if batch.scores is not None and len(batch.classes):
        scores = np.asarray(batch.scores, dtype=float).reshape(rows, len(batch.classes)).tolist()
    message = {
        "v": CONTRACT_VERSION,
        "batch_id": batch.batch_id,
        "producer": producer,
        "model": batch.model,
        "version": str(batch.version),
        "task": batch.task,
        "timestamp": float(batch.timestamp),
        "rows": rows,
        "profile": base64.b64encode(profile(frame).serialize()).decode("ascii"),
        "request_ids": [str(i) for i in ids],
        "predictions": [_scalar(p) for p in batch.predictions],
        "scores": scores,
        "classes": [_scalar(c) for c in batch.classes],
    }
    return orjson.dumps(message, option=orjson.OPT_SERIALIZE_NUMPY)
