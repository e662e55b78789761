"""The serving side of the profile stream without processes: batch feed, float32 widening, coalescing."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from vigil.config import load
from vigil.schema import Feature, OnnxInput, ServingSchema
from serving.batcher import Batcher
from serving.model import Prediction
from serving.producer.feed import feature_columns
from serving.producer.coalesce import coalesce
from serving.producer.message import profile_frame
from vigil.served_batch import ServedBatch, widen_float32


def test_feature_columns_follow_the_schema_across_onnx_inputs() -> None:
    schema = ServingSchema("m", "1", "classification", [Feature("b", "number"), Feature("a", "number"),
                           Feature("city", "string")],
                           [OnnxInput("num", "float32", ["a", "b"]), OnnxInput("city", "string", ["city"])], "label")
    inputs = {"num": np.array([[1, 10], [2, 20]], dtype=np.float32), "city": np.array([["x"], ["y"]], dtype=object)}
    columns = feature_columns(schema, inputs)
    assert list(columns) == ["b", "a", "city"]
    assert columns["b"].tolist() == [10, 20] and columns["city"].tolist() == ["x", "y"]


def test_float32_inputs_are_profiled_as_the_numbers_the_client_sent() -> None:
    sent = [5.1, 0.2, 3.14159, 1e-5, -2.35, 0.0, 123456.7]
    assert widen_float32(np.array(sent, dtype=np.float32)).tolist() == sent
    frame = profile_frame(ServedBatch("m", "1", {"x": np.array([0.2], dtype=np.float32)}, [1], classes=[0, 1]))
    assert frame["x"].tolist() == [0.2] and frame["prediction"].tolist() == ["1"]


def _batch(ts: float, ids: list[str], model: str = "m") -> ServedBatch:
    n = len(ids)
    return ServedBatch(model, "1", {"a": np.arange(n, dtype=float)}, np.zeros(n, dtype=int), scores=np.full((n, 2), 0.5),
                       classes=[0, 1], request_ids=ids, timestamp=ts)


def test_coalesce_merges_per_model_and_window_keeping_row_order() -> None:
    batches = [_batch(120.1, ["a", "b"]), _batch(120.5, ["c"]), _batch(120.6, ["z"], model="other"),
               _batch(180.0, ["d"])]  # the next 60 s window
    merged = coalesce(batches, 60)
    assert [(m.model, list(m.request_ids)) for m in merged] == [("m", ["a", "b", "c"]), ("other", ["z"]), ("m", ["d"])]
    first = merged[0]
    assert first.timestamp == 120.1 and first.columns["a"].tolist() == [0, 1, 0] and first.scores.shape == (3, 2)


def test_batcher_reports_each_batch_once_with_its_ids() -> None:
    seen: list[tuple[int, list[str]]] = []

    class Counting:
        executor = None

        def predict(self, inputs: dict[str, np.ndarray]) -> Prediction:
            return Prediction(np.arange(len(inputs["X"])), None)

    model = Counting()

    async def run() -> list[Prediction]:
        batcher = Batcher(max_batch_size=64, max_latency_s=0.01, max_queue_rows=100,
                          on_batch=lambda inputs, pred, ids, _: seen.append((len(inputs["X"]), list(ids))))
        batcher.start()
        one = np.ones((2, 1))
        results = await asyncio.gather(batcher.submit({"X": one}, 2, ["r1", "r2"], model),
                                       batcher.submit({"X": one}, 2, ["r3", "r4"], model))
        await batcher.submit({"X": one[:1]}, 1, None, model)  # no ids (the warm-up): never reported
        await batcher.stop()
        return results

    results = asyncio.run(run())
    assert [r.labels.tolist() for r in results] == [[0, 1], [2, 3]]
    assert seen == [(4, ["r1", "r2", "r3", "r4"])]  # one batch, one report, ids in row order


def test_linger_setting_is_validated() -> None:
    assert load({"VIGIL_PROFILE_LINGER_MS": "0"}).profile_linger_ms == 0
    with pytest.raises(ValueError, match="VIGIL_PROFILE_LINGER_MS"):
        load({"VIGIL_PROFILE_LINGER_MS": "soon"})
