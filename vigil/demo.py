"""`vigil demo` / `make demo`: the whole path on embedded defaults, narrated.

train iris → convert to ONNX with a parity proof → start a real `bentoml serve` →
send a few hundred predictions → print what a user wants to see → shut down.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

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


def run_demo(settings: Settings, requests_count: int = 400) -> int:
    """Run the demo; returns the process exit code."""
    from converter import convert_version
    from lifecycle import train
    from vigil.registry import ModelRef
    from vigil.serving.launch import serve_command

    print(f"VIGIL_HOME={settings.home}  MLflow: {settings.mlflow_uri}")
    _step("vigil train --dataset iris")
    result = train(settings, dataset="iris")
    print(result.summary)

    _step(f"vigil convert iris --version {result.version}")
    report = convert_version(settings, ModelRef(result.name, version=result.version), progress=True)
    print(report.summary())

    port = free_port()
    settings = config.replace(settings, model=f"models:/{result.name}/{result.version}", grpc_port=free_port())
    argv, env = serve_command(settings, port=port)
    base = f"http://127.0.0.1:{port}"
    log = settings.home / "logs" / "demo-serve.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    _step(f"vigil serve --model {settings.model} --port {port}")
    started = time.monotonic()
    with running(argv, env, f"{base}/readyz", log):
        print(f"ready in {time.monotonic() - started:.1f}s (log: {log})")
        metadata = requests.get(f"{base}/metadata", timeout=5).json()
        features = [f["name"] for f in metadata["inputs"]["features"]]
        print(f"model {metadata['model']['name']} v{metadata['model']['version']}, features: {features}")

        sample = [5.1, 3.5, 1.4, 0.2]
        answer = requests.post(f"{base}/predict", json={"instances": [sample]}, timeout=5).json()
        print(f"sample: {sample} -> prediction {answer['predictions'][0]}, probabilities "
              f"{[round(p, 3) for p in answer['probabilities'][0]]}, classes {answer['classes']}")

        _step(f"sending {requests_count} predictions from 8 concurrent clients")
        rows = _iris_rows()
        started = time.perf_counter()
        latencies = _load(f"{base}/predict", rows, requests_count)
        wall = time.perf_counter() - started
        print(f"{len(latencies)} ok in {wall:.2f}s = {len(latencies) / wall:.0f} req/s; "
              f"p50 {_percentile(latencies, 0.5) * 1000:.1f} ms, p99 {_percentile(latencies, 0.99) * 1000:.1f} ms")

        bad = requests.post(f"{base}/predict", json={"instances": [[1.0, 2.0]]}, timeout=5)
        print(f"bad input -> HTTP {bad.status_code}: {bad.json()['error']['message']}")

        _step("/metrics excerpt")
        metrics = requests.get(f"{base}/metrics", timeout=5).text
        for line in metrics.splitlines():
            if line.startswith(("vigil_predictions_total", "vigil_rejected_requests_total", "vigil_batch_size_count",
                                "vigil_batch_size_sum", "vigil_inference_seconds_count", "vigil_model_info")):
                print("  " + line)
    _step("service stopped; demo done")
    return 0


def _iris_rows() -> list[list[float]]:
    from sklearn.datasets import load_iris

    return load_iris().data.tolist()
