"""The producer's messages are what the monitor's half of CONTRACT.md accepts; the spool."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd

from monitor.wire import CONTRACT_VERSION, parse
from vigil.config import load
from serving.producer import message as producer_message
from serving.producer.spool import Spool
from serving.producer.message import build_message
from serving.producer.stream import ProfileStreamer
from vigil.served_batch import ServedBatch
from vigil.whylogs_compat import deserialize


def test_producer_message_is_accepted_by_the_monitor_parser() -> None:
    assert producer_message.CONTRACT_VERSION == CONTRACT_VERSION
    features = pd.DataFrame({"a": [1.0, np.nan, 3.0], "color": ["red", "blue", None]})
    batch = ServedBatch("iris", 4, features, np.array([0, 2, 2]), scores=np.eye(3), classes=np.array([0, 1, 2]),
                        request_ids=["x", "y", "z"])
    msg = parse(build_message(batch, "host:1:abc"))
    assert (msg.model, msg.version, msg.rows, msg.request_ids) == ("iris", "4", 3, ["x", "y", "z"])
    assert msg.predictions == [0, 2, 2] and msg.classes == [0, 1, 2] and msg.scores[1] == [0.0, 1.0, 0.0]
    view = deserialize(msg.profile)
    assert set(view.get_columns()) == {"a", "color", "prediction", "proba_0", "proba_1", "proba_2"}
    assert view.get_column("prediction").to_summary_dict()["types/string"] == 3  # labels profiled as categories
    regression = parse(build_message(ServedBatch("house", "1", {"x": np.ones(2)}, np.array([1.5, 2.5]), task="regression")))
    assert regression.scores is None and regression.request_ids[0].endswith("-0")


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
    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_MONITOR_URL": f"http://127.0.0.1:{port}",
                     "VIGIL_PROFILE_SPOOL_BYTES": "6000", "VIGIL_PROFILE_LINGER_MS": "0"})
    streamer = ProfileStreamer(settings)
    for _ in range(4):
        assert streamer.submit(ServedBatch("m", "1", {"a": np.arange(8.0)}, np.zeros(8), classes=[0, 1]))
    assert not streamer.flush(2.0)  # cannot deliver: the spool holds what fits
    streamer.close()
    stats = streamer.stats()
    assert stats["sent"] == 0 and stats["spooled"] >= 1 and stats["spool_full"] >= 1
    assert stats["spooled"] + stats["spool_full"] == 4
    assert 0 < stats["spool_bytes"] <= 6000
