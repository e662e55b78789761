"""The serving side of monitoring: hand every served batch to the profile producer.

The batcher calls `BatchFeed` once per successful batch (never per request) with the
model inputs, the batch result and one request id per row. This only builds a
`RawBatch` of column *views* and puts it into the profile agent's queue (a few µs); the
profiling, the POST to the monitor and the prediction log happen in the agent process
(profile_agent.py / agent_main.py), away from this worker's GIL.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from vigil.config import Settings
from vigil.schema import ServingSchema
from vigil.serving.model import Prediction
from vigil.serving.profile_agent import ProfileAgent
from vigil.serving.raw_batch import RawBatch

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
    """Turns served batches into `RawBatch` messages for one model version's agent."""

    def __init__(self, settings: Settings, schema: ServingSchema, registry: Any = None) -> None:
        self.schema = schema
        self.agent = ProfileAgent(settings)

    def start(self) -> None:
        self.agent.start()

    def __call__(self, inputs: dict[str, np.ndarray], prediction: Prediction, ids: list[str], model: Any = None) -> None:
        # `model` is the serving bundle that answered the batch (hot swap): its schema and
        # registry version win over the ones this feed started with.
        schema = model.schema if model is not None else self.schema
        version = str(model.version) if model is not None else schema.model_version
        self.agent.submit(
            RawBatch(
                schema.model_name,
                version,
                schema.task,
                feature_columns(schema, inputs),
                prediction.labels,
                prediction.probabilities,
                list(schema.classes),
                ids,
            )
        )

    def close(self, timeout: float = 10.0) -> None:
        """Stop the agent: it drains its queue, flushes the log and sends or spools the profiles."""
        self.agent.close(timeout)
