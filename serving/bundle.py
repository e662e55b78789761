"""One servable model version as an immutable bundle: ONNX session + schema + validator.

The Runtime holds exactly one `ServingModel` and replaces it with a single assignment
when the registry alias moves (serving/swap/reload.py). Every queued request carries
the bundle it was validated against, so a batch always runs on the model — and reports
the version — that accepted its rows, even while a swap happens.
"""

from __future__ import annotations

import time
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from vigil.config import Settings
from vigil.schema import ServingSchema
from serving.model import OnnxModel, Prediction
from serving.source import ModelFolder
from serving.validation import Validator

# A batch slower than this runs in a worker thread instead of inline on the event loop.
# Measured: iris/logreg takes ~6 µs per call, where a thread hand-off alone costs more
# (tens of µs plus GIL ping-pong); a 300-tree forest takes milliseconds, which would stall
# every connection on the loop. ORT releases the GIL while it runs, so the thread helps.
INLINE_LIMIT_S = 0.0005


class WarmUpError(RuntimeError):
    """The model loaded but could not run a dummy batch."""


@dataclass(frozen=True, eq=False)  # eq=False: identity comparison, the batcher groups by it
class ServingModel:
    """Everything needed to validate and answer requests for one model version."""

    model: OnnxModel
    validator: Validator
    folder: ModelFolder
    version: str  # the registry version when known, else the schema's
    warm_seconds: float
    loaded_at: float
    executor: Executor | None = None  # None = inference inline on the event loop

    @property
    def schema(self) -> ServingSchema:
        return self.model.schema

    @property
    def name(self) -> str:
        return self.model.schema.model_name

    @property
    def slow(self) -> bool:
        """True when a batch takes long enough to be worth a thread hand-off."""
        return self.warm_seconds > INLINE_LIMIT_S

    def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
        return self.model.predict(inputs)

    def with_executor(self, executor: Executor | None) -> "ServingModel":
        return ServingModel(self.model, self.validator, self.folder, self.version, self.warm_seconds,
                            self.loaded_at, executor)


def load_bundle(settings: Settings, folder: ModelFolder) -> ServingModel:
    """Load and warm the model in `folder` (blocking: call it off the event loop).

    Raises ModelLoadError (missing file, unreadable schema, ORT refuses the graph) or
    WarmUpError (the graph loads but a dummy batch fails).
    """
    model = OnnxModel(folder.path, threads=settings.ort_threads)
    try:
        warm_s = model.warm_up(rows=settings.max_batch_size)
    except Exception as exc:  # ORT raises its own types per failure kind
        raise WarmUpError(f"model in {folder.path} fails on a warm-up batch: {_one_line(exc)}") from None
    validator = Validator(model.schema, settings.max_rows_per_request)
    version = folder.version or model.schema.model_version
    return ServingModel(model, validator, folder, version, warm_s, time.time())


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def describe(bundle: ServingModel) -> dict[str, Any]:
    """The bundle's identity for logs and /metadata."""
    return {"name": bundle.name, "version": bundle.version, "source": bundle.folder.origin}
