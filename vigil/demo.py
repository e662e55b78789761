"""`vigil demo` / `make demo`: the whole path on embedded defaults, narrated.

train iris → convert to ONNX with a parity proof → start a real `bentoml serve` →
start the monitor → send a few hundred predictions, then traffic that drifts halfway
with labels for the first half → print the drift verdict per feature and the HTML
report's path → shut down.
"""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import requests

from vigil import config
from vigil.config import Settings
from vigil.procs import free_port, running


def _step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _load(url: str, rows: list[list[float]], count: int, concurrency: int = 8) -> list[float]:
    """POST `count` single-row predictions from `concurrency` threads; return latencies (s)."""
    local = threading.local()

    def one(i: int) -> float:
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        start = time.perf_counter()
        response = session.post(url, json={"instances": [rows[i % len(rows)]]}, timeout=10)
        elapsed = time.perf_counter() - start
        response.raise_for_status()
        return elapsed

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_demo(settings: Settings, requests_count: int = 400, window_seconds: int = 5) -> int:
    """Run the demo (train, convert, serve + monitor, drifting traffic, verdicts); returns the exit code."""
    from converter import convert_version
    from lifecycle import train
    from vigil.registry import ModelRef
    from vigil.serving.launch import serve_command, settings_env

    print(f"VIGIL_HOME={settings.home}  MLflow: {settings.mlflow_uri}")
    _step("vigil train --dataset iris")
    result = train(settings, dataset="iris")
    print(result.summary)

    _step(f"vigil convert iris --version {result.version}")
    report = convert_version(settings, ModelRef(result.name, version=result.version), progress=True)
    print(report.summary())

    port, monitor_port = free_port(), free_port()
    monitor_url = f"http://127.0.0.1:{monitor_port}"
    # Short windows so the drift shows within the demo (the default is 60 s).
    settings = config.replace(settings, model=f"models:/{result.name}/{result.version}", monitor_url=monitor_url,
                              monitor_port=monitor_port, monitor_window_seconds=window_seconds)
    argv, env = serve_command(settings, port=port)
    base = f"http://127.0.0.1:{port}"
    logs = settings.home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    monitor_env = {**config.process_env(settings), **settings_env(settings)}
    monitor_argv = [sys.executable, "-m", "monitor", "--port", str(monitor_port)]
    _step(f"vigil monitor --port {monitor_port}  +  vigil serve --model {settings.model} --port {port}")
    started = time.monotonic()
    with running(monitor_argv, monitor_env, f"{monitor_url}/healthz", logs / "demo-monitor.log"), \
            running(argv, env, f"{base}/readyz", logs / "demo-serve.log"):
        print(f"ready in {time.monotonic() - started:.1f}s (logs: {logs})")
        metadata = requests.get(f"{base}/metadata", timeout=5).json()
        features = [f["name"] for f in metadata["inputs"]["features"]]
        print(f"model {metadata['model']['name']} v{metadata['model']['version']}, features: {features}")

        sample = [5.1, 3.5, 1.4, 0.2]
        answer = requests.post(f"{base}/predict", json={"instances": [sample]}, timeout=5).json()
        print(f"sample: {sample} -> prediction {answer['predictions'][0]}, probabilities "
              f"{[round(p, 3) for p in answer['probabilities'][0]]}, classes {answer['classes']}, "
              f"request id {answer['request_ids'][0]}")

        _step(f"sending {requests_count} predictions from 8 concurrent clients")
        rows = _iris_rows()
        started = time.perf_counter()
        latencies = _load(f"{base}/predict", rows, requests_count)
        wall = time.perf_counter() - started
        print(f"{len(latencies)} ok in {wall:.2f}s = {len(latencies) / wall:.0f} req/s; "
              f"p50 {_percentile(latencies, 0.5) * 1000:.1f} ms, p99 {_percentile(latencies, 0.99) * 1000:.1f} ms")

        bad = requests.post(f"{base}/predict", json={"instances": [[1.0, 2.0]]}, timeout=5)
        print(f"bad input -> HTTP {bad.status_code}: {bad.json()['error']['message']}")

        _drifting_traffic(base, monitor_url, window_seconds)
        _print_drift(monitor_url, result.name)
        from monitor import write_report

        path = write_report(settings, settings.home / "report.html")

        _step("/metrics excerpt (service)")
        metrics = requests.get(f"{base}/metrics", timeout=5).text
        for line in metrics.splitlines():
            if line.startswith(("vigil_predictions_total", "vigil_rejected_requests_total", "vigil_batch_size_count",
                                "vigil_batch_size_sum", "vigil_model_info", "vigil_profiles_")):
                print("  " + line)
    _step("service and monitor stopped; demo done")
    print(f"drift report: {path}")
    return 0


def _drifting_traffic(base: str, monitor_url: str, window: int) -> None:
    """Two windows of iris-like traffic, then two shifted ones; labels for the first half."""
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    shift = 0.8 * X.std(axis=0)
    rng = np.random.default_rng(0)
    time.sleep(window - time.time() % window + 0.05)  # start on a window boundary
    change = time.time() + 2 * window
    _step(f"streaming traffic for {4 * window} s; the inputs shift by 0.8 std after {2 * window} s")
    session = requests.Session()
    labels: list[dict[str, Any]] = []
    sent = 0
    while time.time() < change + 2 * window - 0.3:  # stop inside the last window: it is the 'latest'
        shifted = time.time() >= change
        picks = rng.integers(0, len(X), 16)
        rows = (X[picks] + (shift if shifted else 0)).round(2).tolist()
        answer = session.post(f"{base}/predict", json={"instances": rows}, timeout=10).json()
        sent += len(rows)
        if not shifted:  # ground truth arrives later, for the unshifted rows
            labels += [{"request_id": i, "label": int(t)} for i, t in zip(answer["request_ids"], y[picks])]
        time.sleep(0.05)
    joined = session.post(f"{monitor_url}/v1/labels", json=labels, timeout=30).json()
    print(f"{sent} rows predicted; {len(labels)} labels posted -> {joined}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the producer streams in the background: let it catch up
        versions = session.get(f"{monitor_url}/v1/status", timeout=30).json()["versions"]
        if versions and sum(v["rows_ingested"] for v in versions) >= sent:
            break
        time.sleep(0.5)


def _print_drift(monitor_url: str, model: str) -> None:
    drift = requests.get(f"{monitor_url}/v1/drift", params={"model": model}, timeout=60).json()["versions"][-1]
    _step("monitor: drift per window (GET /v1/drift)")
    for h in drift["history"]:
        quality = h["quality"]
        acc = f", accuracy {quality['accuracy']:.3f} on {quality['labels']} labels" if quality.get("labels") else ""
        print(f"  window {time.strftime('%H:%M:%S', time.localtime(h['window_start']))}: {h['rows']:4d} rows, "
              f"dataset drift {str(h['dataset_drift']):5s} (share {h['drift_share']:.2f}){acc}")
    latest = drift["latest"]
    print(f"latest window: dataset drift = {drift['dataset_drift']}")
    for name, f in latest["features"].items():
        print(f"  {name:14s} {'DRIFT' if f['drift'] else 'ok':5s}  {f['method']:11s} statistic {f['statistic']:.3f}, "
              f"p-value {f['p_value']:.2g}, effect size {f['effect_size']:.3f}")


def _iris_rows() -> list[list[float]]:
    from sklearn.datasets import load_iris

    return load_iris().data.tolist()
