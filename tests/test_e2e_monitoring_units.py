"""The serving side of the profile stream without processes: hand-off records, widening, slices, messages."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import orjson

from vigil.schema import Feature, OnnxInput, ServingSchema
from serving.batcher import Batcher
from serving.model import Prediction
import serving.producer.feed as feed_module
from serving.producer.feed import BatchFeed, feature_columns
from serving.producer.message import batch_message
from serving.producer.slices import Slicer, view_rows
from vigil.config import load
from vigil.served_batch import ServedBatch, widen_float32
from vigil.whylogs_compat import deserialize


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
    body = orjson.loads(batch_message(ServedBatch("m", "1", {"x": np.array([0.2], dtype=np.float32)}, np.array([1]),
                                                  classes=[0, 1])))
    view = deserialize(base64.b64decode(body["profile"]))
    x = view.get_column("x").to_summary_dict()
    assert x["distribution/max"] == 0.2 and x["distribution/min"] == 0.2
    items = view.get_column("prediction").to_summary_dict()["frequent_items/frequent_strings"]
    assert [(i.value, i.est) for i in items] == [("1", 1)]  # a classifier's label is a category
    assert body["v"] == 2 and body["rows"] == 1 and "request_ids" not in body and "predictions" not in body


class _Bundle:
    """What the batcher reports as the model: a bundle's schema and registry version."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.schema = ServingSchema("m", "1", "classification", [Feature("a", "number"), Feature("b", "number")],
                                    [OnnxInput("X", "float32", ["a", "b"])], "label", "probabilities", [0, 1])


def test_the_feed_hands_off_one_record_per_model_version_with_each_rows_serve_time(monkeypatch, tmp_path) -> None:
    v1, v2 = _Bundle("1"), _Bundle("2")
    x = np.array([[1, 2], [3, 4]], dtype=np.float32)
    clock = iter([10.0, 10.5, 11.0])
    monkeypatch.setattr(feed_module.time, "time", lambda: next(clock))
    feed = BatchFeed(load({"VIGIL_HOME": str(tmp_path)}))  # its agent is never started here
    for model, rows, ids in ((v1, 2, ["a", "b"]), (v2, 1, ["z"]), (v1, 1, ["c"])):
        feed({"X": x[:rows]}, Prediction(np.arange(rows), np.full((rows, 2), 0.5)), ids, model)
    x[:] = -1  # the batch's own arrays may be reused: the feed kept copies
    batches, records = feed.take()
    assert batches == 3 and [(r.version, r.ids()) for r in records] == [("1", ["a", "b", "c"]), ("2", ["z"])]
    first = records[0]
    assert first.columns["b"].tolist() == [2, 4, 2] and first.scores.shape == (3, 2)
    assert first.predictions.tolist() == [0, 1, 0]
    assert first.served_at().tolist() == [10.0, 10.0, 11.0] and first.timestamp == 10.0
    assert feed.take() == (0, [])  # taken once


def test_the_feed_grows_past_its_first_buffer_and_keeps_every_row_in_order(tmp_path) -> None:
    model = _Bundle("1")
    feed = BatchFeed(load({"VIGIL_HOME": str(tmp_path)}))
    sent = 0
    while sent < 3 * feed_module._FIRST_CAPACITY:
        n = 1 + sent % 37
        block = np.arange(sent, sent + n, dtype=np.float32).repeat(2).reshape(n, 2)
        feed({"X": block}, Prediction(np.arange(sent, sent + n), None), [str(i) for i in range(sent, sent + n)], model)
        sent += n
    _, (record,) = feed.take()
    assert record.rows == sent and record.scores is None
    assert record.columns["a"].tolist() == list(range(sent)) and record.ids() == [str(i) for i in range(sent)]
    assert record.predictions.tolist() == list(range(sent))


def _batch(ts: float, n: int, model: str = "m") -> ServedBatch:
    return ServedBatch(model, "1", {"a": np.arange(n, dtype=float)}, np.zeros(n, dtype=int), scores=np.full((n, 2), 0.5),
                       classes=[0, 1], timestamp=ts, row_times=np.linspace(ts, ts + 0.01, n))


def test_slices_never_span_two_windows_and_count_every_row_once() -> None:
    slicer = Slicer(window_seconds=60, slice_seconds=3600, slice_rows=10_000)
    slicer.add(_batch(100.0, 5))
    slicer.add(_batch(119.995, 4))  # its rows straddle the 120 s window boundary
    slicer.add(_batch(130.0, 3, model="other"))
    assert slicer.rows == 12
    slices = slicer.due()  # windows that ended long ago are due at once
    got = sorted((s.model, int(s.first_served // 60), view_rows(deserialize(base64.b64decode(
        orjson.loads(s.message("p"))["profile"])))) for s in slices)
    assert got == [("m", 1, 5 + 2), ("m", 2, 2), ("other", 2, 3)]
    assert slicer.rows == 0


def test_a_slice_is_due_by_age_by_rows_or_when_its_window_is_over() -> None:
    now = time.time()
    slicer = Slicer(window_seconds=3600, slice_seconds=0.05, slice_rows=8)
    slicer.add(_batch(now, 3))
    assert slicer.due() == []  # young, small, its window still open
    time.sleep(0.06)
    assert [s.rows for s in slicer.due()] == [3]  # old enough
    slicer.add(_batch(now, 8))
    assert [s.rows for s in slicer.due()] == [8]  # full
    slicer.add(_batch(now - 7200, 2))
    assert [s.rows for s in slicer.due()] == [2]  # its window ended long ago (a replayed spill)


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


