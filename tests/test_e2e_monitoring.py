"""End to end: real `bentoml serve` workers stream batch profiles to a real monitor process.

Models go through `vigil train` + `vigil convert` into a SQLite MLflow registry under a
tmp VIGIL_HOME, so the monitor finds each version's training reference on the registry.
Windows are tumbling in event time stamped by the service (real time), so the monitor
runs with 2-second windows and the traffic is paced against the wall clock.
"""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
from sklearn import metrics as skm

from helpers import free_port, stop_process_group, wait_for, wait_ready
from vigil import config
from vigil.config import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
WINDOW = 2  # seconds: short windows keep the test short
GUARD = 0.2  # no request this close to a window boundary, so each row's window is known
SEA_ROWS, SEA_CHANGE = 3000, 1500


class Proc:
    """A server process we can start, SIGKILL and restart on the same port."""

    def __init__(self, argv: list[str], env: dict[str, str], ready_url: str, log: Path) -> None:
        self.argv, self.env, self.ready_url, self.log = argv, env, ready_url, log
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> "Proc":
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        return self

    def wait(self, timeout: float = 90) -> "Proc":
        assert self.proc is not None
        wait_ready(self.ready_url, self.proc, timeout, self.log)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process_group(self.proc)


@dataclass
class Served:
    """What the client saw for one request."""

    ids: list[str]
    predictions: list
    probabilities: list
    windows: tuple[int, int]  # window starts when sent and when answered (equal unless it straddled)


@dataclass
class Stack:
    settings: Settings
    monitor: Proc
    monitor_url: str
    services: dict[str, str]  # model name -> base url
    sea_frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    rows_sent: dict[str, int] = field(default_factory=dict)

    def status(self, model: str) -> dict:
        versions = requests.get(self.monitor_url + "/v1/status", timeout=30).json()["versions"]
        return next((v for v in versions if v["model"] == model), {"rows_ingested": 0, "profiles_ingested": 0})

    def drift(self, model: str) -> dict:
        return requests.get(self.monitor_url + "/v1/drift", params={"model": model, "limit": 50}, timeout=60).json()["versions"][0]

    def wait_ingested(self, model: str, timeout: float = 45) -> dict:
        """Poll until the monitor has ingested every row sent to `model` (spool replays included)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(model)
            if status["rows_ingested"] >= self.rows_sent.get(model, 0) or time.monotonic() > deadline:
                return status
            time.sleep(0.3)

    def post_labels(self, labels: list[dict]) -> dict:
        response = requests.post(self.monitor_url + "/v1/labels", json=labels, timeout=60)
        response.raise_for_status()
        return response.json()

    def labels_joined(self, model: str) -> int:
        return self.status(model).get("labels_joined", 0)

    def label(self, model: str, labels: list[dict], timeout: float = 30) -> dict:
        """Post labels and wait until all are joined: their rows reach the prediction log when the
        service's agent flushes it (VIGIL_PREDICTION_LOG_FLUSH_SECONDS), and the monitor joins them then."""
        before = self.labels_joined(model)
        answer = self.post_labels(labels)
        wait_for(lambda: self.labels_joined(model) >= before + len(labels), timeout,
                 f"{len(labels)} labels of {model} joining their logged rows")
        return answer


def _sea(n: int, change: int, seed: int) -> pd.DataFrame:
    """SEA concept 0 (x0 + x1 <= 8) switching to concept 3 (<= 9.5) at row `change`; inputs stay uniform."""
    from river.datasets import synth

    stream = synth.ConceptDriftStream(synth.SEA(variant=0, seed=seed), synth.SEA(variant=3, seed=seed + 1),
                                      position=change, width=20, seed=seed + 2)
    rows = [(x[0], x[1], x[2], int(y)) for x, y in stream.take(n)]
    return pd.DataFrame(rows, columns=["x0", "x1", "x2", "y"]).round(4)


def _train_and_convert(settings: Settings, **kwargs) -> str:
    from converter import convert_version
    from lifecycle import train
    from vigil.registry import ModelRef

    result = train(settings, **kwargs)
    convert_version(settings, ModelRef(result.name, version=result.version), progress=False)
    return f"models:/{result.name}/{result.version}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    from serving.launch import serve_command

    home = tmp_path_factory.mktemp("e2e-monitoring")
    monitor_port = free_port()
    settings = config.load({
        "VIGIL_HOME": str(home), "VIGIL_MONITOR_URL": f"http://127.0.0.1:{monitor_port}",
        "VIGIL_MONITOR_WINDOW_SECONDS": str(WINDOW), "VIGIL_PROFILE_SEND_TIMEOUT_S": "1",
    })
    config.apply_to_process(settings)
    from river.datasets import synth

    # concept 0 only (ConceptDriftStream overflows math.exp when the change is far away)
    sea_train = pd.DataFrame([[*x.values(), int(y)] for x, y in synth.SEA(variant=0, seed=1).take(2000)],
                             columns=["x0", "x1", "x2", "y"]).round(4)
    sea_train.to_csv(home / "sea.csv", index=False)
    uris = {
        "iris": _train_and_convert(settings, dataset="iris", estimator="logreg"),
        "sea": _train_and_convert(settings, csv=home / "sea.csv", target="y", name="sea", estimator="logreg"),
    }
    monitor_env = config.process_env(settings)
    monitor_env.update({"VIGIL_MONITOR_WINDOW_SECONDS": str(WINDOW)})
    monitor_url = f"http://127.0.0.1:{monitor_port}"
    monitor = Proc([sys.executable, "-m", "monitor", "--port", str(monitor_port)], monitor_env,
                   monitor_url + "/healthz", home / "monitor.log")
    procs: list[Proc] = [monitor]
    services: dict[str, str] = {}
    try:
        monitor.spawn()
        for name, workers in (("iris", 2), ("sea", 1)):
            port = free_port()
            argv, env = serve_command(config.replace(settings, model=uris[name]), port=port, workers=workers)
            # BentoML keeps (and wipes at start) its prometheus multiprocess dir under
            # BENTOML_HOME: two services sharing one would mix and delete each other's metrics.
            env["BENTOML_HOME"] = str(home / f"bentoml-{name}")
            env["VIGIL_GRPC_PORT"] = "0"  # HTTP only here
            services[name] = f"http://127.0.0.1:{port}"
            procs.append(Proc(argv, env, services[name] + "/readyz", home / f"serve-{name}.log").spawn())
        for proc in procs:  # started together: the waits overlap
            proc.wait()
        yield Stack(settings, monitor, monitor_url, services, sea_frame=_sea(SEA_ROWS, SEA_CHANGE, seed=7))
    finally:
        for proc in procs:
            proc.stop()


def _pace() -> None:
    """Sleep past the next window boundary if it is closer than GUARD seconds."""
    into = time.time() % WINDOW
    if into > WINDOW - GUARD:
        time.sleep(WINDOW - into + 0.02)


def _predict(stack: Stack, model: str, session: requests.Session, rows: list, ids: list[str] | None = None) -> Served:
    _pace()
    sent = time.time()
    body: dict = {"instances": rows}
    if ids is not None:
        body["ids"] = ids
    response = session.post(stack.services[model] + "/predict", json=body, timeout=30)
    assert response.status_code == 200, response.text
    done = time.time()
    answer = response.json()
    assert len(answer["request_ids"]) == len(rows)
    stack.rows_sent[model] = stack.rows_sent.get(model, 0) + len(rows)
    first, last = int(sent // WINDOW) * WINDOW, int(done // WINDOW) * WINDOW
    return Served(answer["request_ids"], answer["predictions"], answer.get("probabilities"), (first, last))


def _assert_quality_matches_sklearn(stack: Stack, model: str, served: list[Served], labels: dict[str, object]) -> int:
    """Every fully attributed window's quality equals sklearn's on the same rows; returns windows checked."""
    by_window: dict[int, list[Served]] = {}
    unsure = {w for s in served if s.windows[0] != s.windows[1] for w in s.windows}
    for s in served:
        by_window.setdefault(s.windows[0], []).append(s)
    history = {h["window_start"]: h["quality"] for h in stack.drift(model)["history"]}
    checked = 0
    for start, group in by_window.items():
        if start in unsure:
            continue  # a straddling request's rows may sit in either neighbour
        ids = [i for s in group for i in s.ids]
        if not all(i in labels for i in ids):
            continue
        y_true = [str(labels[i]) for i in ids]
        y_pred = [str(p) for s in group for p in s.predictions]
        scores = np.array([p for s in group for p in s.probabilities])
        quality = history[start]
        assert quality["labels"] == len(ids)
        assert math.isclose(quality["accuracy"], skm.accuracy_score(y_true, y_pred), abs_tol=1e-12)
        assert math.isclose(quality["f1"], skm.f1_score(y_true, y_pred, average="macro", zero_division=0), abs_tol=1e-12)
        assert math.isclose(quality["precision"], skm.precision_score(y_true, y_pred, average="macro", zero_division=0),
                            abs_tol=1e-12)
        assert math.isclose(quality["recall"], skm.recall_score(y_true, y_pred, average="macro", zero_division=0),
                            abs_tol=1e-12)
        if quality["roc_auc"] is not None:
            if scores.shape[1] == 2:
                expected = skm.roc_auc_score([t == "1" for t in y_true], scores[:, 1])
            else:
                expected = skm.roc_auc_score(y_true, scores, multi_class="ovr", labels=["0", "1", "2"])
            assert math.isclose(quality["roc_auc"], expected, abs_tol=1e-9)
        checked += 1
    return checked


def test_shifted_iris_drifts_within_two_windows_not_before_and_quality_matches_sklearn(stack: Stack) -> None:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(11)
    shift = 0.8 * X.std(axis=0)
    session = requests.Session()
    time.sleep(WINDOW - time.time() % WINDOW + 0.05)  # start on a fresh window
    begin = int(time.time() // WINDOW) * WINDOW
    change = begin + 3 * WINDOW  # three stable windows, then two shifted ones
    served, labels = [], {}
    while time.time() < change + 2 * WINDOW:
        now = time.time()
        picks = rng.integers(0, len(X), 8)
        rows = X[picks] + (shift if now >= change else 0)
        s = _predict(stack, "iris", session, rows.round(2).tolist())
        if now < change:
            labels.update(zip(s.ids, y[picks].tolist()))
            served.append(s)
        time.sleep(0.05)
    stack.wait_ingested("iris")
    history = [h for h in stack.drift("iris")["history"] if begin <= h["window_start"] < change + 2 * WINDOW]
    before = [h["dataset_drift"] for h in history if h["window_start"] < change]
    after = [h["dataset_drift"] for h in history if h["window_start"] >= change]
    assert len(before) == 3 and len(after) == 2, history
    assert before == [False] * 3, history  # no false alarm on the stable part
    assert any(after), history  # flagged within two windows of the shift
    print(f"\niris shift: verdicts before {before}, after {after}; rows/window "
          f"{[h['rows'] for h in history]}")

    result = stack.label("iris", [{"request_id": i, "label": v} for i, v in labels.items()])
    assert result["joined"] + result["pending"] == len(labels) and result["duplicate"] == 0
    assert _assert_quality_matches_sklearn(stack, "iris", served, labels) >= 2


def test_sea_concept_change_fires_adwin_through_labels_and_stable_inputs_raise_no_drift(stack: Stack) -> None:
    frame = stack.sea_frame
    rows, truth = frame[["x0", "x1", "x2"]].values.tolist(), frame["y"].tolist()
    ids = [f"order-{i}" for i in range(len(rows))]  # the client's own ids, carried by the labels later
    session = requests.Session()
    begin = int(time.time() // WINDOW) * WINDOW
    served = []
    for i in range(0, len(rows), 20):
        s = _predict(stack, "sea", session, rows[i:i + 20], ids[i:i + 20])
        assert s.ids == ids[i:i + 20]
        served.append(s)
        time.sleep(0.03)  # spread over a few windows, so "no dataset drift" is checked more than once
    status = stack.wait_ingested("sea")
    assert status["rows_ingested"] == len(rows)
    for i in range(0, len(ids), 500):  # labels arrive later, in stream order
        chunk = [{"request_id": r, "label": t} for r, t in zip(ids[i:i + 500], truth[i:i + 500])]
        stack.label("sea", chunk)

    drift = stack.drift("sea")
    windows = [h for h in drift["history"] if h["window_start"] >= begin]
    assert len(windows) >= 2 and not any(h["dataset_drift"] for h in windows), windows  # uniform inputs throughout
    detections = drift["concept_drift"]
    assert detections, "ADWIN never fired after the concept change"
    first = detections[0]["row_index"]
    assert SEA_CHANGE < first <= SEA_CHANGE + 500, detections
    print(f"\nSEA: {len(windows)} windows, no dataset drift; ADWIN first fired at row {first} "
          f"({first - SEA_CHANGE} rows after the change); detections {[d['row_index'] for d in detections]}")
    labels = dict(zip(ids, truth))
    assert _assert_quality_matches_sklearn(stack, "sea", served, labels) >= 1


def _load(stack: Stack, stop: threading.Event, out: list, failures: list) -> None:
    session = requests.Session()
    rng = np.random.default_rng(threading.get_ident() % 1000)
    from sklearn.datasets import load_iris

    X = load_iris().data
    while not stop.is_set():
        rows = X[rng.integers(0, len(X), 8)].tolist()
        try:
            response = session.post(stack.services["iris"] + "/predict", json={"instances": rows}, timeout=10)
        except requests.RequestException as exc:
            failures.append(repr(exc))
            continue
        if response.status_code != 200:
            failures.append(response.text)
            continue
        out.extend(response.json()["request_ids"])
        time.sleep(0.03)


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


def test_kill9_monitor_under_load_fails_no_prediction_and_ingests_every_profile_once(stack: Stack) -> None:
    assert stack.wait_ingested("iris")["rows_ingested"] == stack.rows_sent.get("iris", 0)
    stop, ids, failures = threading.Event(), [], []
    threads = [threading.Thread(target=_load, args=(stack, stop, ids, failures)) for _ in range(3)]
    for t in threads:
        t.start()
    spooled_before = _metric(requests.get(stack.services["iris"] + "/metrics", timeout=10).text,
                             "vigil_profiles_spooled_total")
    try:
        time.sleep(1.5)
        stack.monitor.kill9()  # kill -9 under load
        time.sleep(2.0)
        # stay dead until a profile has been spooled (a loaded machine may send none in 2 s)
        wait_for(lambda: _metric(requests.get(stack.services["iris"] + "/metrics", timeout=10).text,
                                 "vigil_profiles_spooled_total") > spooled_before, timeout=20,
                 what="a profile spooled while the monitor is dead")
        stack.monitor.spawn().wait()
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []  # zero failed predictions while the monitor was dead
    stack.rows_sent["iris"] = stack.rows_sent.get("iris", 0) + len(ids)
    status = stack.wait_ingested("iris")
    assert status["rows_ingested"] == stack.rows_sent["iris"]  # every row once: replays are not double counted

    # The producer counts a delivery just after the monitor's answer: give the counters a moment.
    # Both services share VIGIL_HOME and so the spool: whichever agent holds the spool's lock
    # replays it, so sends, spools and replays are counted over both services.
    deadline = time.monotonic() + 20
    while True:
        text = requests.get(stack.services["iris"] + "/metrics", timeout=10).text
        other = requests.get(stack.services["sea"] + "/metrics", timeout=10).text
        spooled = _metric(text, "vigil_profiles_spooled_total") + _metric(other, "vigil_profiles_spooled_total")
        replayed = _metric(text, "vigil_profiles_replayed_total") + _metric(other, "vigil_profiles_replayed_total")
        sent = _metric(text, "vigil_profiles_sent_total") + _metric(other, "vigil_profiles_sent_total")
        batches = _metric(text, "vigil_batch_size_count")
        # a replay may carry either service's profiles: messages are counted over both models
        ingested = stack.status("iris")["profiles_ingested"] + stack.status("sea")["profiles_ingested"]
        if (sent + replayed >= ingested and replayed >= spooled) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    status = stack.status("iris")
    assert spooled > 0 and replayed == spooled, text + other
    assert _metric(text, "vigil_profiles_dropped_total") + _metric(other, "vigil_profiles_dropped_total") == 0
    # every message delivered once, summed over both workers; messages merge several served
    # batches (each worker also ran one unprofiled warm-up batch)
    assert sent + replayed == ingested, text + other
    assert status["profiles_ingested"] <= batches - 2, text
    print(f"\nkill -9 under load: {len(ids)} rows predicted, 0 failed; {spooled:.0f} profiles spooled and replayed; "
          f"{status['profiles_ingested']} profiles / {status['rows_ingested']} rows ingested once")

    # restart between prediction and label: the join still happens
    stack.monitor.kill9()
    stack.monitor.spawn().wait()
    result = stack.label("iris", [{"request_id": i, "label": 0} for i in ids])
    assert result["duplicate"] == 0

    bad = requests.post(stack.monitor_url + "/v1/profiles", data=b"\x00garbage", timeout=10)
    assert bad.status_code == 400 and stack_rejected(stack)["malformed"] >= 1


def stack_rejected(stack: Stack) -> dict:
    return requests.get(stack.monitor_url + "/v1/status", timeout=30).json()["rejected"]
