"""The serving side of monitoring: hand every served batch to the profile producer.

The batcher calls `BatchFeed` once per successful batch (never per request) with the
model inputs, the batch result and one request id per row. This only builds a
`ServedBatch` of column *views* and enqueues it (a few µs); the profiling and the POST
to the monitor happen on the producer's thread (profile_stream.py).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from vigil.config import Settings
from vigil.schema import ServingSchema
from vigil.serving.model import Prediction
from vigil.serving.profile_stream import ProfileStreamer, ServedBatch

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
    """Turns served batches into `ServedBatch` messages for one model version."""

    def __init__(self, settings: Settings, schema: ServingSchema, registry: Any = None) -> None:
        self.schema = schema
        self.streamer = ProfileStreamer(settings, registry)

    def start(self) -> None:
        self.streamer.start()

    def __call__(self, inputs: dict[str, np.ndarray], prediction: Prediction, ids: list[str]) -> None:
        schema = self.schema
        self.streamer.submit(
            ServedBatch(
                schema.model_name,
                schema.model_version,
                feature_columns(schema, inputs),
                prediction.labels,
                task=schema.task,
                scores=prediction.probabilities,
                classes=schema.classes,
                request_ids=ids,
            )
        )

    def close(self, timeout: float = 5.0) -> None:
        """Stop the producer thread: what is queued is sent, or spooled if the monitor is away."""
        self.streamer.close(timeout)
        log.info("vigil: profile stream closed: %s", self.streamer.stats())
