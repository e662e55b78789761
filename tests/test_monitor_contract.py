"""The producer's messages are what the monitor's half of CONTRACT.md accepts; the spool."""

from __future__ import annotations

import base64
import socket

import numpy as np
import orjson
import pandas as pd
import pytest

from monitor.wire import CONTRACT_VERSION, WireError, parse
from vigil.config import load
from serving.producer import message as producer_message
from serving.producer.spool import Spool
from serving.producer.message import batch_message
from serving.producer.stream import ProfileStreamer
from vigil.served_batch import ServedBatch
from vigil.whylogs_compat import deserialize


def test_producer_message_is_accepted_by_the_monitor_parser() -> None:
    assert producer_message.CONTRACT_VERSION == CONTRACT_VERSION == 2
    features = {"a": np.array([1.0, np.nan, 3.0]), "color": np.array(["red", "blue", None], dtype=object)}
    batch = ServedBatch("iris", "4", features, np.array([0, 2, 2]), scores=np.eye(3), classes=[0, 1, 2])
    msg = parse(batch_message(batch, "host:1:abc"))
    assert (msg.contract, msg.model, msg.version, msg.rows, msg.classes, msg.producer) == (
        2, "iris", "4", 3, [0, 1, 2], "host:1:abc")
    view = deserialize(msg.profile)
    assert set(view.get_columns()) == {"a", "color", "prediction", "proba_0", "proba_1", "proba_2"}
    assert view.get_column("prediction").to_summary_dict()["types/string"] == 3  # labels profiled as categories
    regression = parse(batch_message(ServedBatch("house", "1", {"x": np.ones(2)}, np.array([1.5, 2.5]), task="regression")))
    assert regression.rows == 2 and "prediction" in deserialize(regression.profile).get_columns()


def test_a_v1_producer_is_still_accepted_during_a_rolling_upgrade() -> None:
    """Contract v1 carried per-row ids, predictions and scores too: checked, then not needed."""
    from vigil.whylogs_compat import profile

    view = profile(pd.DataFrame({"a": [1.0, 2.0], "prediction": ["0", "1"]}))
    v1 = {"v": 1, "batch_id": "old-1", "producer": "old", "model": "iris", "version": "3", "task": "classification",
          "timestamp": 1.0, "rows": 2, "profile": base64.b64encode(view.serialize()).decode(),
          "request_ids": ["p", "q"], "predictions": [0, 1], "scores": [[1.0, 0.0], [0.0, 1.0]], "classes": [0, 1]}
    msg = parse(orjson.dumps(v1))
    assert (msg.contract, msg.rows, msg.batch_id) == (1, 2, "old-1")
    with pytest.raises(WireError, match="'predictions' has 1 entries for 2 rows"):
        parse(orjson.dumps({**v1, "predictions": [0]}))
    with pytest.raises(WireError, match="unsupported contract version 3"):
        parse(orjson.dumps({**v1, "v": 3}))


def test_spool_keeps_order_and_caps_bytes(tmp_path) -> None:
    spool = Spool(tmp_path, cap_bytes=250)
    assert spool.append(b"a" * 100) and spool.append(b"b" * 100)
    assert not spool.append(b"c" * 100)  # would pass the cap
    assert [p.read_bytes()[:1] for p in spool.files()] == [b"a", b"b"]
    assert Spool(tmp_path, 250).bytes == 200  # a new worker sees what is on disk


def test_monitor_down_spools_then_drops_past_the_cap_and_counts(tmp_path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    batch = ServedBatch("m", "1", {"a": np.arange(8.0)}, np.zeros(8), classes=[0, 1])
    size = len(batch_message(batch))
    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_MONITOR_URL": f"http://127.0.0.1:{port}",
                     "VIGIL_PROFILE_SPOOL_BYTES": str(int(2.5 * size))})  # room for two messages
    streamer = ProfileStreamer(settings)
    for _ in range(4):  # four slices: flush closes the open one each time
        assert streamer.submit(ServedBatch("m", "1", {"a": np.arange(8.0)}, np.zeros(8), classes=[0, 1]))
        assert not streamer.flush(0.3)  # cannot deliver: the spool holds what fits
    streamer.close()
    stats = streamer.stats()
    assert (stats["sent"], stats["spooled"], stats["spool_full"]) == (0, 2, 2)
    assert stats["rows_profiled"] == 32 and 0 < stats["spool_bytes"] <= 2.5 * size
