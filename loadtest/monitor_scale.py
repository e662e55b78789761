"""Many producers, one monitor: does the monitor keep up with a fleet, and what does it cost?

Each producer is what one serving worker's agent sends: one contract-v2 message a
second holding the whylogs profile of the rows it served in that second (a real profile
of iris-shaped rows, built once with vigil/profile_builder.py; only the batch id and the
timestamp change per message). N producers at R rows per message send N x R rows a
second. The monitor is a real `python -m monitor` process; its CPU time is read from
/proc before and after, and every row must be ingested exactly once.

    python -m loadtest.monitor_scale --producers 16 --rows 13500 --seconds 60
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psutil
import requests

from vigil.config import load, process_env
from vigil.procs import free_port, running

MODEL, VERSION = "fleet", "1"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass(frozen=True)
class ScaleResult:
    producers: int
    seconds: float
    rows_sent: int
    rows_ingested: int
    profiles_sent: int
    profiles_ingested: int
    failed_sends: int
    monitor_cpu_seconds: float

    @property
    def rows_per_second(self) -> float:
        return self.rows_sent / self.seconds

    @property
    def monitor_cores(self) -> float:
        return self.monitor_cpu_seconds / self.seconds

    @property
    def cpu_per_million_rows(self) -> float:
        return self.monitor_cpu_seconds / self.rows_sent * 1e6 if self.rows_sent else float("nan")

    def summary(self) -> str:
        return (f"{self.producers} producers, {self.seconds:.0f} s: {self.rows_per_second:,.0f} rows/s "
                f"({self.profiles_sent / self.seconds:.1f} profiles/s); monitor {self.monitor_cores:.3f} cores, "
                f"{self.cpu_per_million_rows:.3f} CPU s per million rows; {self.rows_ingested:,} of {self.rows_sent:,} "
                f"rows ingested, {self.failed_sends} failed sends")


def _rows(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    columns = {name: np.round(rng.normal(loc, 0.5, n), 1).astype(np.float32)
               for name, loc in zip(FEATURES, (5.8, 3.0, 3.8, 1.2))}
    labels = rng.integers(0, 3, n)
    return {**columns, "prediction": labels, ("proba_0", "proba_1", "proba_2"): rng.dirichlet(np.ones(3), n)}


def slice_profile(rows: int) -> str:
    """The base64 profile of one producer's second: `rows` iris-shaped rows, built as the agent builds it."""
    from vigil.profile_builder import ProfileAccumulator

    accumulator = ProfileAccumulator(categorical={"prediction"})
    accumulator.append(_rows(rows))
    view = accumulator.build(time.time())
    assert view is not None
    return base64.b64encode(view.serialize()).decode()


def install(home: Path) -> None:
    """The fleet model's reference, so the monitor accepts its profiles."""
    from monitor.reference import install_reference

    columns = _rows(2000, seed=1)
    frame = pd.DataFrame({name: columns[name].astype(float) for name in FEATURES})
    frame["target"] = frame["prediction"] = columns["prediction"]
    for i, column in enumerate(columns[("proba_0", "proba_1", "proba_2")].T):
        frame[f"proba_{i}"] = column
    frame.to_parquet(home / "reference.parquet")
    install_reference(load({"VIGIL_HOME": str(home)}), MODEL, VERSION, home / "reference.parquet", "classification",
                      "target")


def _produce(url: str, profile: str, rows: int, stop: threading.Event, sent: list[int], failed: list[int]) -> None:
    session = requests.Session()
    producer = f"fleet:{threading.get_ident()}"
    next_at = time.monotonic()
    while not stop.is_set():
        body = orjson.dumps({"v": 2, "batch_id": uuid.uuid4().hex, "producer": producer, "model": MODEL,
                             "version": VERSION, "task": "classification", "timestamp": time.time(), "rows": rows,
                             "classes": [0, 1, 2], "profile": profile})
        try:
            ok = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30).status_code == 200
        except requests.RequestException:
            ok = False
        (sent if ok else failed).append(rows)
        next_at += 1.0  # one profile per producer per second, like an agent's slice
        stop.wait(max(0.0, next_at - time.monotonic()))


def run_scale(producers: int = 16, rows: int = 13_500, seconds: float = 60.0, monitor_cpu: int | None = None,
              home: Path | None = None) -> ScaleResult:
    """Feed one fresh monitor from `producers` threads for `seconds`; count rows and the monitor's CPU."""
    with tempfile.TemporaryDirectory(prefix="vigil-scale-") as tmp:
        home = Path(home or tmp)
        install(home)
        port = free_port()
        settings = load({"VIGIL_HOME": str(home), "VIGIL_LIFECYCLE_WORKER": "0", "VIGIL_PREDICTION_LOG": "off"})
        argv = [sys.executable, "-m", "monitor", "--port", str(port)]
        if monitor_cpu is not None:
            argv = ["taskset", "-c", str(monitor_cpu), *argv]
        base = f"http://127.0.0.1:{port}"
        profile = slice_profile(rows)
        with running(argv, process_env(settings), f"{base}/healthz", log_path=home / "monitor.log", timeout=60) as proc:
            monitor = psutil.Process(proc.pid)  # taskset execs the monitor: the same process
            before = monitor.cpu_times()
            stop, sent, failed = threading.Event(), [], []
            threads = [threading.Thread(target=_produce, args=(f"{base}/v1/profiles", profile, rows, stop, sent, failed))
                       for _ in range(producers)]
            started = time.monotonic()
            for t in threads:
                t.start()
            stop.wait(seconds)
            stop.set()
            for t in threads:
                t.join()
            elapsed = time.monotonic() - started
            after = monitor.cpu_times()
            status = requests.get(f"{base}/v1/status", timeout=60).json()
        version = next((v for v in status["versions"] if v["model"] == MODEL), {"rows_ingested": 0, "profiles_ingested": 0})
        cpu = (after.user + after.system) - (before.user + before.system)
        return ScaleResult(producers, elapsed, sum(sent), version["rows_ingested"], len(sent),
                           version["profiles_ingested"], len(failed), cpu)


def render(result: ScaleResult) -> list[str]:
    """The BENCHMARKS.md section for one fleet run."""
    return [
        "### One monitor, many producers",
        "",
        f"{result.producers} producers (each what one serving worker's agent sends: one real whylogs profile a "
        f"second, of {result.rows_sent // max(1, result.profiles_sent):,} iris-shaped rows) feeding one monitor "
        f"process for {result.seconds:.0f} s (`loadtest/monitor_scale.py`).",
        "",
        "| producers | rows/s | profiles/s | rows sent | rows ingested | monitor cores | monitor CPU s per million rows |",
        "|---|---|---|---|---|---|---|",
        f"| {result.producers} | {result.rows_per_second:,.0f} | {result.profiles_sent / result.seconds:.1f} "
        f"| {result.rows_sent:,} | {result.rows_ingested:,} | {result.monitor_cores:.3f} "
        f"| {result.cpu_per_million_rows:.3f} |",
    ]


def floors(result: ScaleResult) -> list[tuple[str, str, bool]]:
    """(floor, measured, met) for the floors table."""
    return [
        (f"{result.producers} producers into one monitor at ≥ 200,000 rows/s: every row counted once",
         f"{result.rows_per_second:,.0f} rows/s; {result.rows_ingested:,} of {result.rows_sent:,} ingested",
         result.rows_per_second >= 200_000 and result.rows_ingested == result.rows_sent and not result.failed_sends),
        ("the monitor below half a core meanwhile", f"{result.monitor_cores:.3f} cores", result.monitor_cores < 0.5),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.monitor_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=16)
    parser.add_argument("--rows", type=int, default=13_500, help="rows per message (one message per producer per second)")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--cpu", type=int, help="pin the monitor to this core")
    args = parser.parse_args(argv)
    result = run_scale(args.producers, args.rows, args.seconds, args.cpu)
    print(result.summary())
    return 0 if result.rows_ingested == result.rows_sent and not result.failed_sends else 1


if __name__ == "__main__":
    sys.exit(main())
