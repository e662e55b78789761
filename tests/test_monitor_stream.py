"""The monitor as a real process, fed by the real ProfileStreamer: drift, ADWIN, faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import requests

from monitor.reference import install_reference
from vigil.config import Settings, load, process_env, replace
from vigil.procs import free_port
from helpers import wait_for
from serving.producer.stream import ProfileStreamer
from vigil.predlog.writer import RowLog
from vigil.served_batch import ServedBatch

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
T0 = 1_800_000_000.0  # synthetic event time: 60 s windows without waiting for them
WINDOW = 60


def _columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    return {str(c): frame[c].to_numpy() for c in frame.columns}


class MonitorProcess:
    """`python -m monitor` on a free port with its state under `settings.home`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.url = settings.monitor_url
        self.proc: subprocess.Popen | None = None
        self.env: dict[str, str] = {}  # extra VIGIL_* settings for the monitor process

    def start(self) -> "MonitorProcess":
        port = self.url.rsplit(":", 1)[1]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--port", port], cwd=ROOT, env={**process_env(self.settings), **self.env},
            stdout=subprocess.DEVNULL, stderr=open(self.settings.home / "monitor.log", "ab"),
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.settings.home / "monitor.log").read_text()
            try:
                if requests.get(self.url + "/healthz", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise AssertionError("monitor did not start")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def get(self, path: str, **params) -> dict:
        response = requests.get(self.url + path, params=params, timeout=60)
        response.raise_for_status()
        return response.json()


@pytest.fixture()
def settings(tmp_path) -> Settings:
    return load({"VIGIL_HOME": str(tmp_path), "VIGIL_MONITOR_URL": f"http://127.0.0.1:{free_port()}",
                 "VIGIL_PROFILE_SEND_TIMEOUT_S": "1"})


@pytest.fixture()
def monitor(settings):
    proc = MonitorProcess(settings)
    yield proc
    proc.kill()


class Agent:
    """What a serving worker's agent does with each batch: profile it for the monitor, log its rows."""

    def __init__(self, settings: Settings) -> None:
        self.streamer = ProfileStreamer(settings)
        self.log = RowLog(settings.prediction_log_dir, flush_seconds=3600)

    def submit(self, batch: ServedBatch) -> bool:
        self.log.append(batch)
        return self.streamer.submit(batch)

    def flush(self, timeout: float) -> bool:
        self.log.flush()
        return self.streamer.flush(timeout)

    def stats(self) -> dict:
        return self.streamer.stats()

    def close(self) -> None:
        self.streamer.close()


def _stream(agent: Agent, model: str, frame: pd.DataFrame, preds, scores, classes, start: float,
            ids: list[str] | None = None, rows_per_window: int = 256) -> None:
    """Submit `frame` in 64-row batches, `rows_per_window` rows per synthetic window."""
    for i in range(0, len(frame), 64):
        ts = start + (i // rows_per_window) * WINDOW + 1
        agent.submit(ServedBatch(
            model, "1", _columns(frame.iloc[i:i + 64]), preds[i:i + 64], scores=None if scores is None else scores[i:i + 64],
            classes=classes, request_ids=None if ids is None else ids[i:i + 64], timestamp=ts,
        ))


def test_shifted_dataset_drifts_within_two_windows_and_not_before(settings, monitor) -> None:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    data = load_breast_cancer(as_frame=True)
    X, y = data.data, data.target
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    ref = X.copy()
    ref["target"], ref["prediction"] = y, model.predict(X)
    proba = model.predict_proba(X)
    ref["proba_0"], ref["proba_1"] = proba[:, 0], proba[:, 1]
    ref.to_parquet(settings.home / "ref.parquet")
    install_reference(settings, "cancer", "1", settings.home / "ref.parquet", "classification", "target")
    monitor.start()

    rng = np.random.default_rng(3)
    live = X.sample(n=2048, replace=True, random_state=4).reset_index(drop=True)
    live = live * rng.normal(1.0, 0.01, size=live.shape)  # jitter, not drift
    live.iloc[1024:] = live.iloc[1024:] + 0.8 * X.std()  # every feature shifts at window 4
    streamer = Agent(settings)
    _stream(streamer, "cancer", live, model.predict(live), model.predict_proba(live), [0, 1], T0)
    assert streamer.flush(60), streamer.stats()
    streamer.close()

    drift = monitor.get("/v1/drift")["versions"][0]
    verdicts = [h["dataset_drift"] for h in drift["history"]]
    assert len(verdicts) == 8 and sum(h["rows"] for h in drift["history"]) == 2048
    assert verdicts[:4] == [False] * 4, drift["history"]
    assert any(verdicts[4:6]) and drift["dataset_drift"] is True
    assert drift["history"][-1]["prediction_drift"] is True
    status = monitor.get("/v1/status")["versions"][0]
    # 32 batches of 64 rows in 8 windows: one profile per window's slice, every row once
    assert (status["profiles_ingested"], status["rows_ingested"]) == (8, 2048)
    assert streamer.stats()["sent"] == 8


def _sea(n: int, position: int, seed: int):
    from river.datasets import synth

    stream = synth.ConceptDriftStream(synth.SEA(variant=0, seed=seed), synth.SEA(variant=3, seed=seed + 1),
                                      position=position, width=20, seed=seed + 2)
    xs, ys = zip(*stream.take(n))
    frame = pd.DataFrame([[x[0], x[1], x[2]] for x in xs], columns=["x0", "x1", "x2"])
    return frame, np.array(ys)


def test_sea_concept_drift_fires_adwin_after_the_change_and_no_data_drift(settings, monitor) -> None:
    # The model is SEA's first concept exactly (x0 + x1 > 8): no error before the
    # change, then the threshold moves to 9.5. The inputs never change distribution.
    ref, _ = _sea(1000, 2000, seed=40)  # rows before the change only
    ref["prediction"] = (ref.x0 + ref.x1 > 8).astype(str)
    ref["target"] = ref["prediction"]
    ref.to_parquet(settings.home / "sea.parquet")
    install_reference(settings, "sea", "1", settings.home / "sea.parquet", "classification", "target")
    monitor.start()

    frame, labels = _sea(3072, 1536, seed=7)
    preds = np.where(frame.x0 + frame.x1 > 8, "True", "False")
    ids = [f"sea-{i}" for i in range(len(frame))]
    streamer = Agent(settings)
    _stream(streamer, "sea", frame, preds, None, [], T0, ids=ids, rows_per_window=512)
    assert streamer.flush(60), streamer.stats()
    streamer.close()
    for i in range(0, len(ids), 512):
        body = [{"request_id": r, "label": str(bool(l))} for r, l in zip(ids[i:i + 512], labels[i:i + 512])]
        # the rows are in the prediction log already: every label joins at once
        assert requests.post(monitor.url + "/v1/labels", data=orjson.dumps(body), timeout=30).json()["joined"] == len(body)

    drift = monitor.get("/v1/drift", model="sea")["versions"][0]
    assert [h["dataset_drift"] for h in drift["history"]] == [False] * 6  # no false alarm on stable inputs
    detections = drift["concept_drift"]
    assert detections, "ADWIN never fired"
    assert 1536 < detections[0]["row_index"] <= 1536 + 512, detections
    first_window = (detections[0]["window_start"] - drift["history"][0]["window_start"]) // WINDOW
    assert first_window in (3, 4)  # the change is at window 3's start: detected within two windows
    q = drift["history"][0]["quality"]
    assert q["labels"] == 512 and q["accuracy"] == 1.0


def test_kill9_under_load_loses_nothing_and_counts_once(settings, monitor) -> None:
    frame = pd.DataFrame(np.random.default_rng(5).normal(size=(64 * 60, 3)), columns=["a", "b", "c"])
    preds = (frame.a > 0).astype(int).to_numpy()
    ref = frame.iloc[:512].copy()
    ref["target"] = ref["prediction"] = preds[:512]
    ref.to_parquet(settings.home / "ref.parquet")
    install_reference(settings, "toy", "1", settings.home / "ref.parquet", "classification", "target")
    monitor.start()
    streamer = ProfileStreamer(replace(settings, profile_slice_seconds=0.1))  # a dozen slices, some while it is dead
    streamer.start()
    costs = []
    for i in range(60):
        if i == 20:
            monitor.kill()  # kill -9 mid-stream
        if i == 45:
            monitor.start()
        batch = ServedBatch("toy", "1", _columns(frame.iloc[i * 64:(i + 1) * 64]), preds[i * 64:(i + 1) * 64],
                            classes=[0, 1], timestamp=T0 + i)
        started = time.perf_counter()
        accepted = streamer.submit(batch)
        costs.append(time.perf_counter() - started)
        assert accepted
        time.sleep(0.02)
    assert streamer.flush(60), streamer.stats()
    stats = streamer.stats()
    streamer.close()
    assert stats["spooled"] > 0 and stats["replayed"] == stats["spooled"]
    assert stats["spool_full"] == stats["rejected"] == stats["error"] == 0 and stats["rows_profiled"] == 3840
    # Only an append to a slice: the median is microseconds even while the monitor is dead.
    # (The worst case can reach a GIL switch interval while the sender thread profiles.)
    assert np.median(costs) < 0.0005, f"median submit {np.median(costs) * 1e3:.3f} ms"
    status = monitor.get("/v1/status")["versions"][0]
    assert (status["profiles_ingested"], status["rows_ingested"]) == (stats["sent"] + stats["replayed"], 3840)
    windows = monitor.get("/v1/drift")["versions"][0]["history"]
    assert sum(w["rows"] for w in windows) == 3840  # rows in == rows merged


def test_restart_between_prediction_and_label_still_joins(settings, monitor, tmp_path) -> None:
    frame = pd.DataFrame({"a": np.linspace(-1, 1, 64)})
    preds = (frame.a > 0).astype(int).to_numpy()
    ref = frame.copy()
    ref["target"] = ref["prediction"] = preds
    ref.to_parquet(tmp_path / "r.parquet")
    install_reference(settings, "toy", "1", tmp_path / "r.parquet", "classification", "target")
    monitor.start()
    early = [{"request_id": "late-pred", "label": 1}]
    assert requests.post(monitor.url + "/v1/labels", json=early, timeout=10).json()["pending"] == 1
    streamer = Agent(settings)
    ids = [f"o-{i}" for i in range(63)] + ["late-pred"]
    streamer.submit(ServedBatch("toy", "1", _columns(frame), preds, classes=[0, 1], request_ids=ids, timestamp=T0))
    monitor.kill()  # the label waits in its state; the row reaches the log while it is down
    assert streamer.flush(1) is False
    monitor.start()
    assert streamer.flush(30)
    streamer.close()
    labels = [{"request_id": f"o-{i}", "label": int(preds[i])} for i in range(63)] + [{"request_id": "never", "label": 0}]
    result = requests.post(monitor.url + "/v1/labels", json=labels, timeout=10).json()
    assert (result["joined"], result["pending"]) == (63, 1)
    wait_for(lambda: monitor.get("/v1/status")["versions"][0]["labels_joined"] == 64, 10,
             "the label that came first joining its logged row")
    status = monitor.get("/v1/status")
    assert status["labels"]["waiting_now"] == 1  # "never" is counted, not lost
    quality = monitor.get("/v1/drift")["versions"][0]["history"][0]["quality"]
    assert quality["labels"] == 64 and quality["accuracy"] == 1.0


def test_bad_input_gets_4xx_and_is_counted(settings, monitor, tmp_path) -> None:
    monitor.env = {"VIGIL_MONITOR_MAX_BODY_BYTES": "4096"}
    monitor.start()
    url = monitor.url + "/v1/profiles"
    assert requests.post(url, data=b"\x00\x01garbage", timeout=10).status_code == 400
    assert requests.post(url, data=b'{"v": 99}', timeout=10).status_code == 422
    assert requests.post(url, data=b"x" * 5000, timeout=10).status_code == 413
    from serving.producer.message import batch_message

    unknown = batch_message(ServedBatch("ghost", "3", {"a": np.ones(2)}, np.array([0, 1]), classes=[0, 1]))
    response = requests.post(url, data=unknown, timeout=60)
    assert response.status_code == 404 and "ghost/3" in response.json()["error"]
    assert requests.post(monitor.url + "/v1/labels", data=b"{}", timeout=10).status_code == 400
    rejected = monitor.get("/v1/status")["rejected"]
    assert rejected == {"malformed": 2, "version": 1, "too_large": 1, "unknown_model": 1}
    metrics = requests.get(monitor.url + "/metrics", timeout=10).text
    assert 'vigil_monitor_rejected_total{reason="too_large"} 1.0' in metrics


def test_report_from_running_monitor_and_from_saved_state(settings, monitor, tmp_path) -> None:
    from monitor import write_report

    frame = pd.DataFrame({"a": np.random.default_rng(1).normal(size=128), "kind": ["p", "q"] * 64})
    preds = (frame.a > 0).astype(int).to_numpy()
    ref = frame.copy()
    ref["target"] = ref["prediction"] = preds
    ref.to_parquet(tmp_path / "r.parquet")
    install_reference(settings, "toy", "1", tmp_path / "r.parquet", "classification", "target")
    monitor.start()
    streamer = Agent(settings)
    _stream(streamer, "toy", frame, preds, None, [0, 1], T0)
    assert streamer.flush(30)
    streamer.close()
    live = write_report(settings, tmp_path / "live.html")
    text = live.read_text()
    assert text.count("<img") >= 3 and "<td>a</td>" in text and "<td>kind</td>" in text
    metrics = requests.get(monitor.url + "/metrics", timeout=10).text
    assert 'vigil_monitor_feature_drift{feature="a",method="ks",model="toy",version="1"}' in metrics
    assert 'vigil_monitor_rows_ingested_total{model="toy",version="1"} 128.0' in metrics
    monitor.kill(signal.SIGTERM)
    offline = write_report(settings, tmp_path / "offline.html")
    assert offline.read_text().count("<img") == text.count("<img")
