"""Drifted traffic across the replicas, and what the clients saw (per replica and version)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests

SHIFT_STD = 0.8  # inputs move by this many standard deviations: dataset drift


def iris_data() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_iris

    bunch = load_iris(as_frame=True)
    return bunch.data.to_numpy(), bunch.target.to_numpy(), list(bunch.data.columns)


def shifted(seed: int = 1) -> Any:
    """Iris after the drift, with its true labels (the retraining's recent data)."""
    import pandas as pd

    X, y, features = iris_data()
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame((X + SHIFT_STD * X.std(axis=0) + rng.normal(0, 0.05, X.shape)).round(3), columns=features)
    frame["target"] = y
    return frame


@dataclass
class Seen:
    """Per replica: rows answered by version, failed requests and their first errors."""

    rows: Counter = field(default_factory=Counter)  # (replica, version) -> rows
    requests: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)

    def rows_total(self) -> int:
        return sum(self.rows.values())


class DriftedTraffic:
    """One client thread per replica, each posting `batch` drifted rows with request ids, nonstop."""

    def __init__(self, replicas: list[str], batch: int = 8, pause_s: float = 0.01) -> None:
        self.replicas, self.batch, self.pause_s = replicas, batch, pause_s
        self.seen = Seen()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._rows = shifted().drop(columns="target").to_numpy().tolist()

    def start(self) -> "DriftedTraffic":
        for i, base in enumerate(self.replicas):
            thread = threading.Thread(target=self._client, args=(i, base), name=f"traffic-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def _client(self, replica: int, base: str) -> None:
        session, n = requests.Session(), 0
        while not self._stop.is_set():
            start = (n * self.batch) % len(self._rows)
            rows = (self._rows * 2)[start:start + self.batch]
            ids = [f"r{replica}-{n}-{j}" for j in range(len(rows))]
            n += 1
            try:
                answer = session.post(f"{base}/predict", json={"instances": rows, "ids": ids}, timeout=10)
                ok = answer.status_code == 200
                version = answer.json()["model"]["version"] if ok else None
                error = "" if ok else f"{base}: HTTP {answer.status_code} {answer.text[:200]}"
            except requests.RequestException as exc:
                ok, version, error = False, None, f"{base}: {exc}"
            with self._lock:
                self.seen.requests += 1
                if ok:
                    self.seen.rows[(replica, version)] += len(rows)
                else:
                    self.seen.failed += 1
                    if len(self.seen.errors) < 5:
                        self.seen.errors.append(error)
            time.sleep(self.pause_s)

    def stop(self) -> Seen:
        self._stop.set()
        for thread in self._threads:
            thread.join(15)
        return self.seen
