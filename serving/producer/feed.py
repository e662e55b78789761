"""The serving side of monitoring: hand every served batch to the profile producer.

The batcher calls `BatchFeed` once per successful batch (never per request) with the
model inputs, the batch result and one request id per row. This only builds a
`ServedBatch` of column *views* and puts it into the profile agent's queue (a few µs); the
profiling, the POST to the monitor and the prediction log happen in the agent process
(agent.py / agent_process.py), away from this worker's GIL.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from vigil.config import Settings
from vigil.schema import ServingSchema
from serving.model import Prediction
from serving.producer.agent import ProfileAgent
from vigil.served_batch import ServedBatch

log = logging.getLogger("bentoml.vigil")


def feature_columns(schema: ServingSchema, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One array per feature (schema order) from the ONNX input blocks, without copying."""
    columns: dict[str, np.ndarray] = {}
    for spec in schema.onnx_inputs:
        block = inputs[spec.name]
        for j, name in enumerate(spec.columns):
            columns[name] = block[:, j] if block.ndim == 2 else block
    return {name: columns[name] for name in schema.feature_names}


class BatchFeed:
    """Turns served batches into `ServedBatch` records for this worker's agent."""

    def __init__(self, settings: Settings) -> None:
        self.agent = ProfileAgent(settings)

    def start(self) -> None:
        self.agent.start()

    def __call__(self, inputs: dict[str, np.ndarray], prediction: Prediction, ids: list[str], model: Any) -> None:
        """The batcher's `on_batch`: `model` is the bundle that answered (its version, after a hot swap)."""
        schema = model.schema
        self.agent.submit(ServedBatch(
            schema.model_name, str(model.version), feature_columns(schema, inputs), prediction.labels,
            task=schema.task, scores=prediction.probabilities, classes=list(schema.classes), request_ids=ids,
        ))

    def close(self, timeout: float = 10.0) -> None:
        """Stop the agent: it drains its queue, flushes the log and sends or spools the profiles."""
        self.agent.close(timeout)
