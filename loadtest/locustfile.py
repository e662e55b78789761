"""Locust load for a running Vigil service (`vigil loadtest` runs it headless).

    .venv/bin/locust -f loadtest/locustfile.py --host http://127.0.0.1:3000 [UserClass ...]

Users:
    PredictUser   POST /predict with rows drawn from the model's reference data
    DriftUser     the same rows, numeric features shifted more and more over the run
                  (a drift scenario: the monitor's drift alerts should fire)
    GrpcUser      KServe v2 / Triton `inference.GRPCInferenceService` ModelInfer calls;
                  idle unless --vigil-grpc-host is given (gRPC is optional in the service)

Rows come from --vigil-payloads (a JSON list of {feature: value} objects, written by
loadtest/gate.py from the version's reference sample); without it they are synthesised
from the service's /metadata feature list, which exercises the path but not realistic
distributions.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, User, between, constant, events, task

POOL: list[dict[str, Any]] = []  # request rows, shared by all users of this process
META: dict[str, Any] = {}  # the service's /metadata
STD: dict[str, float] = {}  # per numeric feature, the pool's standard deviation
STARTED = [0.0]
HEADERS: dict[str, str] = {}  # the predict token (VIGIL_PREDICT_TOKEN[_FILE]) when the service wants one


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("Vigil")
    group.add_argument("--vigil-payloads", default="", help="JSON list of request rows (objects by feature name)")
    group.add_argument("--vigil-rows", type=int, default=1, help="rows per request")
    group.add_argument("--vigil-wait", type=float, default=0.0, help="seconds each user waits between requests")
    group.add_argument("--vigil-drift-seconds", type=float, default=30.0, help="DriftUser reaches full shift after this")
    group.add_argument("--vigil-drift-scale", type=float, default=3.0, help="full shift, in standard deviations")
    group.add_argument("--vigil-stats-out", default="", help="write the final per-endpoint stats here (JSON)")
    group.add_argument("--vigil-grpc-host", default="", help="host:port of the gRPC endpoint (empty: GrpcUser idles)")


@events.test_start.add_listener
def _prepare(environment: Any, **_: Any) -> None:
    """Fetch /metadata once and build the row pool before any user starts."""
    import requests

    from vigil.auth import predict_headers
    from vigil.config import load

    opts = environment.parsed_options
    HEADERS.update(predict_headers(load()))
    META.update(requests.get(f"{environment.host}/metadata", timeout=10).json())
    features = [f["name"] for f in META["inputs"]["features"]]
    rows = _read_pool(opts.vigil_payloads) if opts and opts.vigil_payloads else _synthesise(META, 256)
    POOL[:] = [{k: row[k] for k in features} for row in rows]
    for name in features:
        values = [r[name] for r in POOL if isinstance(r[name], (int, float))]
        if len(values) > 1:
            mean = sum(values) / len(values)
            STD[name] = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 or 1.0
    STARTED[0] = time.monotonic()


@events.test_stop.add_listener
def _save_stats(environment: Any, **_: Any) -> None:
    """The final per-endpoint stats, unaltered (Locust's own --json-file resets them first)."""
    opts = environment.parsed_options
    if opts and opts.vigil_stats_out and environment.runner is not None:
        entries = [e.serialize() for e in environment.runner.stats.entries.values() if e.num_requests or e.num_failures]
        Path(opts.vigil_stats_out).write_text(json.dumps(entries, default=str))


def _read_pool(path: str) -> list[dict[str, Any]]:
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
        raise ValueError(f"{path}: expected a non-empty JSON list of objects")
    return rows


def _synthesise(meta: dict[str, Any], n: int) -> list[dict[str, Any]]:
    rng = random.Random(0)
    features = meta["inputs"]["features"]
    return [{f["name"]: rng.gauss(0, 1) if f["type"] == "number" else "unknown" for f in features} for _ in range(n)]


def _rows(count: int, shift: float = 0.0) -> list[dict[str, Any]]:
    rows = random.sample(POOL, count) if count <= len(POOL) else random.choices(POOL, k=count)
    if shift:
        rows = [{k: v + shift * STD[k] if k in STD else v for k, v in row.items()} for row in rows]
    return rows


class PredictUser(HttpUser):
    """Reference-like traffic on POST /predict."""

    weight = 1
    wait_time = constant(0)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.rows_per_request = opts.vigil_rows if opts else 1
        if opts and opts.vigil_wait:
            self.wait_time = between(opts.vigil_wait * 0.5, opts.vigil_wait * 1.5)

    def shift(self) -> float:
        return 0.0

    @task
    def predict(self) -> None:
        body = {"instances": _rows(self.rows_per_request, self.shift())}
        with self.client.post("/predict", json=body, headers=HEADERS, name="/predict", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")
            elif len(response.json().get("predictions", ())) != len(body["instances"]):
                response.failure("wrong number of predictions")


class DriftUser(PredictUser):
    """Numeric features shift linearly from 0 to --vigil-drift-scale standard deviations."""

    weight = 1

    def shift(self) -> float:
        opts = self.environment.parsed_options
        ramp = opts.vigil_drift_seconds if opts else 30.0
        scale = opts.vigil_drift_scale if opts else 3.0
        return scale * min(1.0, (time.monotonic() - STARTED[0]) / max(ramp, 1e-3))


class GrpcUser(User):
    """Open Inference Protocol over gRPC with tritonclient; one ModelInfer per task."""

    weight = 1
    wait_time = constant(0)

    def on_start(self) -> None:
        opts = self.environment.parsed_options
        self.client = None
        if not (opts and opts.vigil_grpc_host):
            self.wait_time = constant(3600)  # no gRPC endpoint configured: stay idle
            return
        # grpcio blocks gevent's loop unless told to cooperate; must precede any channel.
        import grpc.experimental.gevent as grpc_gevent
        import tritonclient.grpc as triton

        grpc_gevent.init_gevent()
        self.triton = triton
        self.client = triton.InferenceServerClient(opts.vigil_grpc_host)
        self.rows_per_request = opts.vigil_rows

    def on_stop(self) -> None:
        # An open grpcio channel under gevent keeps Locust's process alive after its summary.
        if self.client is not None:
            self.client.close()
            self.client = None

    @task
    def infer(self) -> None:
        if self.client is None:
            return
        started = time.perf_counter()
        error: Exception | None = None
        try:
            self.client.infer(META["model"]["name"], self._inputs(_rows(self.rows_per_request)),
                              model_version=str(META["model"]["version"]), headers=HEADERS)
        except Exception as exc:  # any failure is a failed request for Locust's stats
            error = exc
        self.environment.events.request.fire(
            request_type="grpc", name="ModelInfer", response_time=(time.perf_counter() - started) * 1000,
            response_length=0, exception=error, context={},
        )

    def _inputs(self, rows: list[dict[str, Any]]) -> list[Any]:
        """Tensors in the service's OIP convention (serving/oip/model.py).

        All-numeric models: one FP32 [rows, n_features] input in feature order, named like
        the single ONNX input. Models with string features: one [rows, 1] input per
        feature, named by it, BYTES for strings and FP32 otherwise.
        """
        import numpy as np

        features = META["inputs"]["features"]
        onnx_inputs = META["inputs"]["onnx_inputs"]
        if all(f["type"] != "string" for f in features):
            name = onnx_inputs[0]["name"] if len(onnx_inputs) == 1 else "input"
            data = np.array([[r[f["name"]] for f in features] for r in rows], dtype=np.float32)
            return [self._tensor(name, data, "FP32")]
        tensors = []
        for f in features:
            if f["type"] == "string":
                tensors.append(self._tensor(f["name"], np.array([[str(r[f["name"]]).encode()] for r in rows], dtype=object), "BYTES"))
            else:
                tensors.append(self._tensor(f["name"], np.array([[r[f["name"]]] for r in rows], dtype=np.float32), "FP32"))
        return tensors

    def _tensor(self, name: str, data: Any, datatype: str) -> Any:
        tensor = self.triton.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        return tensor
