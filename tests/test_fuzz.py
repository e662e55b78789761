"""Fuzzed input against a real `bentoml serve` and a real monitor (issue 7, "Fuzzed input").

Schemathesis drives every route from the OpenAPI documents (the service's own
/openapi.json, BentoML's /docs.json for its native routes, the monitor's /openapi.json);
hypothesis strategies (tests/fuzz_strategies.py) add hostile prediction bodies and raw gRPC
messages. Every case must be answered below 500 (gRPC: INVALID_ARGUMENT / NOT_FOUND /
RESOURCE_EXHAUSTED), every refusal must carry a message, and no worker may die.

Seeded and derandomized, so a run is reproducible. The normal suite runs ~600 cases;
`make fuzz` sets FUZZ_CASES (read only here) for the long run.
"""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path
from typing import Any, Callable

import grpc
import psutil
import pytest
import requests
import schemathesis
from fuzz_strategies import grpc_requests, oip_bodies, predict_bodies
from helpers import free_port, running_server
from hypothesis import HealthCheck, Phase, given, seed as fix_seed, settings, strategies as st
from schemathesis import GenerationMode
from serving_models import IRIS_FEATURES, build_iris

from vigil.config import load, process_env
from serving.launch import serve_command
from vigil.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration

CASES = int(os.environ.get("FUZZ_CASES", "600"))  # total across all routes; `make fuzz` raises it
BODY_LIMIT = 65536  # small limits keep giant-body cases cheap while still crossing them
GRPC_LIMIT = 1 << 20
GRPC_OK = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.RESOURCE_EXHAUSTED}
# share of CASES per family: schema-driven HTTP, hostile bodies, gRPC
SHARES = {"service_schema": 0.25, "bentoml_schema": 0.05, "monitor_schema": 0.2, "predict": 0.2,
          "oip": 0.15, "grpc": 0.15}


class Tally:
    """Counts cases and collects every violation instead of stopping at the first one."""

    def __init__(self) -> None:
        self.cases: collections.Counter[str] = collections.Counter()
        self.statuses: collections.Counter[str] = collections.Counter()
        self.problems: list[str] = []

    def http(self, family: str, label: str, response: Any, sent: Any) -> None:
        self.cases[family] += 1
        status = response.status_code
        self.statuses[f"{family}:{status}"] += 1
        if status >= 500:
            self.problems.append(f"{label}: {status} {response.text[:300]!r} for {str(sent)[:300]}")
        elif status >= 400 and not _message(response):
            self.problems.append(f"{label}: {status} without a message for {str(sent)[:300]}")

    def report(self) -> str:
        return f"{sum(self.cases.values())} cases {dict(self.cases)}; statuses {dict(sorted(self.statuses.items()))}"


def _message(response: Any) -> str:
    """The refusal's human message, wherever the route puts it."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()
    if isinstance(body, dict):
        error = body.get("error", body.get("detail", body.get("message")))
        if isinstance(error, dict):
            error = error.get("message")
        return str(error or "").strip()
    return str(body).strip()


def _run(strategy: st.SearchStrategy[Any], examples: int, check: Callable[[Any], None], seed: int) -> None:
    """Draw `examples` values deterministically (no shrinking: every case is tallied, not raised)."""
    @fix_seed(seed)
    @settings(max_examples=max(1, examples), database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(strategy)
    def inner(value: Any) -> None:
        check(value)

    inner()


def _pids(proc: Any) -> set[int]:
    parent = psutil.Process(proc.pid)
    return {parent.pid, *(child.pid for child in parent.children(recursive=True))}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """One iris server (1 worker, gRPC on) and one monitor, both real processes."""
    home = tmp_path_factory.mktemp("fuzz")
    model = build_iris(home / "iris")
    grpc_port, port, monitor_port = free_port(), free_port(), free_port()
    settings_ = load({"VIGIL_HOME": str(home), "VIGIL_MODEL": str(model.folder), "VIGIL_GRPC_PORT": str(grpc_port),
                      "VIGIL_MAX_BODY_BYTES": str(BODY_LIMIT), "VIGIL_MAX_ROWS_PER_REQUEST": "64",
                      "VIGIL_GRPC_MAX_MESSAGE_BYTES": str(GRPC_LIMIT), "VIGIL_MONITOR_MAX_BODY_BYTES": str(BODY_LIMIT),
                      "VIGIL_MONITOR_URL": f"http://127.0.0.1:{monitor_port}", "VIGIL_LIFECYCLE_WORKER": "0"})
    argv, env = serve_command(settings_, port=port, workers=1)
    env["BENTOML_HOME"] = str(home / "bentoml")
    monitor_env = {**env, **process_env(settings_)}
    service = f"http://127.0.0.1:{port}"
    monitor = f"http://127.0.0.1:{monitor_port}"
    with running_server([sys.executable, "-m", "monitor", "--port", str(monitor_port)], monitor_env,
                        f"{monitor}/healthz", timeout=60, cwd=PROJECT_ROOT, log_path=home / "monitor.log") as mon, \
            running_server(argv, env, f"{service}/readyz", timeout=90, cwd=PROJECT_ROOT,
                           log_path=home / "service.log") as srv:
        yield {"service": service, "monitor": monitor, "grpc": f"127.0.0.1:{grpc_port}",
               "procs": (srv, mon), "home": home}


def _weight(operation: Any) -> int:
    """Operations that take input get the cases; a bare GET has little to vary."""
    has_body = bool(operation.body)
    has_params = any(True for _ in operation.iter_parameters())
    return 12 if has_body else 2 if has_params else 0


def _schema_cases(tally: Tally, family: str, schema: Any, base: str, budget: int, seed: int) -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    total = sum(_weight(op) for op in operations) or 1
    session = requests.Session()
    for i, operation in enumerate(operations):
        per_mode = max(3, budget * _weight(operation) // total // 2)
        # positive cases name the served model, so they reach the handlers past routing
        pinned = {k: v for k, v in (("name", "iris"), ("version", "1"))
                  if any(p.name == k for p in operation.path_parameters)}
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            label = f"{operation.label} [{mode.value}]"

            def check(case: Any, label: str = label) -> None:
                response = case.call(base_url=base, session=session, timeout=30)
                tally.http(family, label, response, case.as_curl_command())

            fixed = pinned if mode is GenerationMode.POSITIVE and pinned else None
            try:
                _run(operation.as_strategy(generation_mode=mode, path_parameters=fixed), per_mode, check, seed + i)
            except Exception as exc:  # an operation with nothing to negate: positive cases only
                if mode is GenerationMode.POSITIVE or "Unsatisfiable" not in type(exc).__name__:
                    raise


def _body_cases(tally: Tally, family: str, url: str, strategy: Any, budget: int, seed: int) -> None:
    session = requests.Session()

    def check(body: bytes) -> None:
        response = session.post(url, data=body, headers={"content-type": "application/json"}, timeout=30)
        tally.http(family, url, response, body[:300])

    _run(strategy, budget, check, seed)


def _grpc_cases(tally: Tally, target: str, budget: int, seed: int) -> None:
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    big = GRPC_LIMIT * 4  # the client may send more than the server accepts: that's the point
    with grpc.insecure_channel(target, options=[("grpc.max_send_message_length", big),
                                                ("grpc.max_receive_message_length", big)]) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

        def check(request: Any) -> None:
            tally.cases["grpc"] += 1
            try:
                stub.ModelInfer(request, timeout=30)
                code, details = grpc.StatusCode.OK, "ok"
            except grpc.RpcError as error:
                code, details = error.code(), error.details()
            tally.statuses[f"grpc:{code.name}"] += 1
            if code not in GRPC_OK or not details:
                tally.problems.append(f"grpc: {code.name} {details!r} for {str(request)[:300]}")

        _run(grpc_requests("iris", "X"), budget, check, seed)
        oversized = service_pb2.ModelInferRequest(model_name="iris")
        tensor = oversized.inputs.add(name="X", datatype="FP32", shape=[GRPC_LIMIT // 8, 4])
        oversized.raw_input_contents.append(b"\0" * (GRPC_LIMIT * 2))
        check(oversized)
        empty = service_pb2.ModelInferRequest(model_name="iris")
        empty.inputs.add(name="X", datatype="FP32", shape=[0, 4]).contents.fp32_contents.extend([])
        check(empty)
        del tensor


def test_fuzz_every_route_no_5xx_no_crash(stack):
    tally = Tally()
    srv, mon = stack["procs"]
    before = _pids(srv), _pids(mon)
    budget = {family: int(CASES * share) for family, share in SHARES.items()}
    service_spec = requests.get(f"{stack['service']}/openapi.json", timeout=10).json()
    _schema_cases(tally, "service_schema", schemathesis.openapi.from_dict(service_spec), stack["service"],
                  budget["service_schema"], seed=7000)
    native = requests.get(f"{stack['service']}/docs.json", timeout=10).json()
    native["paths"] = {path: ops for path, ops in native["paths"].items() if path == "/v1/predict"}
    _schema_cases(tally, "bentoml_schema", schemathesis.openapi.from_dict(native), stack["service"],
                  budget["bentoml_schema"], seed=7100)
    monitor_spec = requests.get(f"{stack['monitor']}/openapi.json", timeout=10).json()
    _schema_cases(tally, "monitor_schema", schemathesis.openapi.from_dict(monitor_spec), stack["monitor"],
                  budget["monitor_schema"], seed=7200)
    bodies = predict_bodies(IRIS_FEATURES, BODY_LIMIT)
    half = budget["predict"] // 2
    _body_cases(tally, "predict", f"{stack['service']}/predict", bodies, half, seed=7300)
    _body_cases(tally, "predict", f"{stack['service']}/v1/predict", bodies, budget["predict"] - half, seed=7301)
    _body_cases(tally, "oip", f"{stack['service']}/v2/models/iris/infer", oip_bodies("X"), budget["oip"], seed=7400)
    _grpc_cases(tally, stack["grpc"], budget["grpc"], seed=7500)

    print(f"\nfuzz: {tally.report()}")
    assert not tally.problems, f"{len(tally.problems)} problems:\n" + "\n".join(tally.problems[:30])
    assert sum(tally.cases.values()) >= CASES * 0.8, tally.report()
    assert (_pids(srv), _pids(mon)) == before, "a worker died or was restarted while fuzzing"
    assert requests.post(f"{stack['service']}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
                         timeout=10).status_code == 200
    assert requests.get(f"{stack['monitor']}/healthz", timeout=10).status_code == 200
