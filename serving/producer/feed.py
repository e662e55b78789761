"""The serving side of monitoring: hand every served batch to this worker's agent process.

The batcher calls `BatchFeed` once per successful batch (never per request) with the
model inputs, the batch result, one request id per row and the model version that
answered. That is one deque append of references (about a microsecond): the arrays were
answered already and are never written again. Every 100 ms the agent's hand-off thread
(agent.py) turns what was served meanwhile into one `ServedBatch` per model version
(`combine`: a few concatenations) and puts them into the agent's queue as one item; the
profiling, the POST to the monitor and the prediction log happen in the agent process
(agent_process.py), away from this worker's GIL.
"""

from __future__ import annotations

import time
from itertools import chain
from typing import Any

import numpy as np

from serving.model import Prediction
from serving.producer.agent import ProfileAgent
from vigil.config import Settings
from vigil.schema import ServingSchema
from vigil.served_batch import ServedBatch

# One served batch as the batcher reported it: (served at, model bundle, inputs, prediction, ids).
Served = tuple[float, Any, dict[str, np.ndarray], Prediction, list[str]]


def feature_columns(schema: ServingSchema, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One array per feature (schema order) from the ONNX input blocks, without copying."""
    columns: dict[str, np.ndarray] = {}
    for spec in schema.onnx_inputs:
        block = inputs[spec.name]
        for j, name in enumerate(spec.columns):
            columns[name] = block[:, j] if block.ndim == 2 else block
    return {name: columns[name] for name in schema.feature_names}


def _concat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def combine(served: list[Served]) -> list[ServedBatch]:
    """What was served since the last hand-off, as one record per model version (order kept)."""
    groups: dict[int, list[Served]] = {}
    for item in served:
        groups.setdefault(id(item[1]), []).append(item)
    out = []
    for items in groups.values():
        model = items[0][1]
        schema = model.schema
        inputs = {name: _concat([i[2][name] for i in items]) for name in items[0][2]}
        labels = _concat([i[3].labels for i in items])
        probabilities = None if items[0][3].probabilities is None else _concat([i[3].probabilities for i in items])
        sizes = [len(i[4]) for i in items]
        out.append(ServedBatch(
            schema.model_name, str(model.version), feature_columns(schema, inputs), labels, task=schema.task,
            scores=probabilities, classes=list(schema.classes), request_ids=list(chain.from_iterable(i[4] for i in items)),
            timestamp=items[0][0], row_times=np.repeat(np.array([i[0] for i in items]), sizes),
        ))
    return out


class BatchFeed:
    """The batcher's `on_batch`: remember each served batch for the agent's next hand-off."""

    def __init__(self, settings: Settings) -> None:
        self.agent = ProfileAgent(settings, combine)

    def start(self) -> None:
        self.agent.start()

    def __call__(self, inputs: dict[str, np.ndarray], prediction: Prediction, ids: list[str], model: Any) -> None:
        """`model` is the bundle that answered (its version, after a hot swap)."""
        self.agent.submit((time.time(), model, inputs, prediction, ids))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the agent: it drains its queue, flushes the log and sends or spools the profiles."""
        self.agent.close(timeout)
