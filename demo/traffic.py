"""Demo traffic: a background load loop that can drift, labels what it sent, and counts swaps.

`LoadLoop` keeps a few client threads posting iris predictions to the service the
whole time the lifecycle plays out, so every registry move happens under load: it
counts requests and failures, notes when each model version first answered, and
keeps the ground truth of every answered row so labels can be posted to the monitor
(the "label pipeline" of the demo).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests

DRIFT_STD = 0.8  # the injected shift, in standard deviations of each feature
# The business story of the labels: a customer accepts a right prediction (outcome) and
# pays this price for the class (value); a wrong one earns nothing.
PRICE = {0: 10.0, 1: 25.0, 2: 40.0}


@dataclass
class Iris:
    X: np.ndarray
    y: np.ndarray
    features: list[str]

    @property
    def shift(self) -> np.ndarray:
        return DRIFT_STD * self.X.std(axis=0)


def load_iris_data() -> Iris:
    from sklearn.datasets import load_iris

    bunch = load_iris(as_frame=True)
    return Iris(bunch.data.to_numpy(), bunch.target.to_numpy(), list(bunch.data.columns))


def shifted_frame(iris: Iris, seed: int = 1, shuffle_labels: bool = False) -> Any:
    """Recent data after the drift: shifted iris rows with (optionally shuffled) true labels."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    X = iris.X + iris.shift + rng.normal(0, 0.05, iris.X.shape)
    y = rng.permutation(iris.y) if shuffle_labels else iris.y
    frame = pd.DataFrame(X.round(3), columns=iris.features)
    frame["target"] = y
    return frame


@dataclass
class Stats:
    """What the clients saw; `window(start, end)` slices it by time."""

    ok: int = 0
    failed: int = 0
    versions: Counter = field(default_factory=Counter)
    events: list[tuple[float, str | None]] = field(default_factory=list)  # (wall time, version or None = failed)
    errors: list[str] = field(default_factory=list)

    def between(self, start: float, end: float) -> tuple[int, int]:
        """(requests, failures) answered between two wall times."""
        picked = [version for at, version in self.events if start <= at <= end]
        return len(picked), picked.count(None)

    def first_answer(self, version: str, since: float) -> float | None:
        """Wall time of the first answer from `version` at or after `since`."""
        return next((at for at, v in self.events if v == version and at >= since), None)


def label_record(request_id: str, truth: int, prediction: Any) -> dict[str, Any]:
    """The ground truth of one answered row, with its business fields (outcome, value)."""
    accepted = str(prediction) == str(truth)
    return {"request_id": request_id, "label": truth, "outcome": accepted,
            "value": PRICE.get(truth, 0.0) if accepted else 0.0}


class LoadLoop:
    """`clients` threads posting `rows`-row predictions every `pause` seconds until stopped."""

    def __init__(self, base: str, iris: Iris, clients: int = 2, rows: int = 8, pause: float = 0.02,
                 headers: dict[str, str] | None = None) -> None:
        self.base, self.iris, self.clients, self.rows, self.pause = base, iris, clients, rows, pause
        self.headers = headers or {}  # vigil.auth.predict_headers when the service wants a predict token
        self.stats = Stats()
        self.drifting = False
        self.paused = False  # clients idle (only while a build without hot swap restarts the service)
        self._labels: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> "LoadLoop":
        for i in range(self.clients):
            thread = threading.Thread(target=self._client, args=(i,), name=f"demo-client-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> Stats:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self.stats

    def _client(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        session = requests.Session()
        while not self._stop.is_set():
            picks = rng.integers(0, len(self.iris.X), self.rows)
            if not self.paused:
                rows = self.iris.X[picks] + (self.iris.shift if self.drifting else 0)
                self._one(session, rows.round(3).tolist(), self.iris.y[picks])
            self._stop.wait(self.pause)

    def _one(self, session: requests.Session, rows: list[list[float]], truth: np.ndarray) -> None:
        try:
            response = session.post(f"{self.base}/predict", json={"instances": rows}, headers=self.headers, timeout=10)
            answer = response.json() if response.status_code == 200 else None
            error = None if answer else f"HTTP {response.status_code}: {response.text[:200]}"
        except (requests.RequestException, ValueError) as exc:
            answer, error = None, f"{type(exc).__name__}: {exc}"
        now = time.time()
        with self._lock:
            version = str(answer["model"]["version"]) if answer else None
            self.stats.events.append((now, version))
            if answer is None:
                self.stats.failed += 1
                self.stats.errors.append(str(error))
                return
            self.stats.ok += 1
            self.stats.versions[str(version)] += 1
            self._labels += [label_record(rid, int(t), p)
                             for rid, t, p in zip(answer["request_ids"], truth, answer["predictions"])]

    def post_labels(self, monitor_url: str, headers: dict[str, str] | None = None) -> dict[str, int]:
        """Send the ground truth of everything answered since the last call to the monitor."""
        with self._lock:
            labels, self._labels = self._labels, []
        if not labels:
            return {"joined": 0, "pending": 0}
        response = requests.post(f"{monitor_url}/v1/labels", json=labels, headers=headers, timeout=30)
        response.raise_for_status()
        return response.json()


class LabelFeed:
    """Post the loop's labels every `every` seconds in a thread (ground truth arriving live)."""

    def __init__(self, loop: LoadLoop, monitor_url: str, every: float = 1.0, headers: dict[str, str] | None = None) -> None:
        self.loop, self.monitor_url, self.every = loop, monitor_url, every
        self.headers = headers  # vigil.auth.auth_headers when the monitor wants the API token
        self.joined = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-labels", daemon=True)

    def start(self) -> "LabelFeed":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop, then post what is left (stop the load loop first so nothing is left behind)."""
        self._stop.set()
        self._thread.join(10)
        self._post()

    def _post(self) -> None:
        try:
            self.joined += self.loop.post_labels(self.monitor_url, self.headers).get("joined", 0)
        except requests.RequestException:
            pass  # the monitor is restarting or busy: these labels are lost, later ones count

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._post()
