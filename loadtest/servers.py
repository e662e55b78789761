"""The servers `loadtest.bench` compares, each started the way its users start it."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from vigil import config
from vigil.config import Settings

# Names in the table (and for `--only`).
VIGIL_HTTP = "vigil-http"
VIGIL_GRPC = "vigil-grpc"
VIGIL_GRPC_STREAM = "vigil-grpc-stream"
VIGIL_MONITORED = "vigil-http+monitor"
VIGIL_UNBATCHED = "vigil-http-unbatched"
SEED = "seed-fastapi-pyfunc"
MLFLOW = "mlflow-models-serve"
CEILING = "bare-starlette"
GRPC_CEILING = "bare-grpcio"
ALL = (VIGIL_HTTP, VIGIL_GRPC, VIGIL_GRPC_STREAM, VIGIL_MONITORED, VIGIL_UNBATCHED, SEED, MLFLOW, CEILING, GRPC_CEILING)


@dataclass(frozen=True)
class Companion:
    """A process the server needs running first (the monitor for the streaming row)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str
    cpu: int | None = None  # the core it is pinned to; None = the server's core


@dataclass
class Server:
    """A server to measure: how to start it and what to send it."""

    name: str
    model: str  # the model label in the table
    argv: list[str]
    env: dict[str, str]
    port: int
    body: str  # one prediction request
    path: str = "/predict"
    ready_path: str = "/readyz"
    check: Callable[[dict], bool] = lambda answer: True
    # gRPC servers: load goes to this port as OIP ModelInfer calls (loadtest/grpc_load.py)
    grpc_port: int | None = None
    grpc_message: bytes = b""
    grpc_stream: bool = False  # load as ModelStreamInfer calls instead of ModelInfer
    companions: list[Companion] = field(default_factory=list)
    note: str = ""  # how this server differs from the default, for the table


@dataclass(frozen=True)
class BenchModel:
    """A registered + converted model and one row of its data."""

    label: str  # for the table, e.g. "iris LogisticRegression"
    uri: str  # models:/NAME/VERSION
    columns: list[str]
    row: list[float]

    @property
    def heavy(self) -> bool:
        return "RandomForest" in self.label


def prepare_models(settings: Settings, heavy: bool) -> list[BenchModel]:
    """Train and convert the benchmark models into the bench registry."""
    from converter import convert_version
    from lifecycle import train
    from lifecycle.datasets import load_dataset
    from vigil.registry import ModelRef

    wanted = [("iris", "logreg", {}, "iris LogisticRegression")]
    if heavy:
        wanted.append(("breast_cancer", "random-forest", {"n_estimators": "300"}, "breast_cancer RandomForest(300)"))
    models = []
    for dataset, estimator, params, label in wanted:
        result = train(settings, dataset=dataset, estimator=estimator, params=params, name=f"bench-{dataset}")
        convert_version(settings, ModelRef(result.name, version=result.version), progress=False)
        frame, _, _ = load_dataset(dataset)
        models.append(BenchModel(label, f"models:/{result.name}/{result.version}", list(frame.columns),
                                 [float(v) for v in frame.iloc[0].tolist()]))
    return models


def _one_prediction(answer: dict) -> bool:
    return "predictions" in answer and len(answer["predictions"]) == 1


def vigil_server(settings: Settings, model: BenchModel, name: str, free_port: Callable[[], int],
                 grpc: bool = False, **changes: object) -> Server:
    """A `bentoml serve service:Vigil` with one worker; `changes` are Settings fields.

    The profile stream and the prediction log are off unless asked for: the plain rows
    measure the serving path, the `+monitor` row runs Vigil's defaults (every batch
    profiled, streamed and logged). `grpc`: also serve OIP gRPC (always on for vigil-grpc).
    """
    from loadtest.grpc_load import infer_request
    from serving.launch import serve_command

    port = free_port()
    grpc_port = free_port() if grpc or name in (VIGIL_GRPC, VIGIL_GRPC_STREAM) else 0  # 0: HTTP-only runs bind none
    changes = {"profile_stream": False, "prediction_log": "off", **changes}
    served = config.replace(settings, model=model.uri, grpc_port=grpc_port, **changes)
    argv, env = serve_command(served, port=port, workers=1)
    server = Server(name, model.label, argv, env, port, json.dumps({"instances": [model.row]}),
                    check=_one_prediction, note=", ".join(f"{k}={v}" for k, v in changes.items()))
    if grpc_port:
        server.grpc_port = grpc_port
        server.grpc_message = infer_request(model.uri.split("/")[1], [model.row])
        server.grpc_stream = name == VIGIL_GRPC_STREAM
    return server


def bare_grpc_server(settings: Settings, model: BenchModel, free_port: Callable[[], int]) -> Server:
    """The gRPC ceiling (loadtest/peers/bare_grpc.py), loaded with the same ModelInfer message as vigil-grpc."""
    from loadtest.grpc_load import infer_request

    port, grpc_port = free_port(), free_port()
    return Server(GRPC_CEILING, model.label, [sys.executable, "-m", "loadtest.peers.bare_grpc", str(grpc_port),
                                              str(port)],
                  config.process_env(settings), port, json.dumps({"instances": [model.row]}), grpc_port=grpc_port,
                  grpc_message=infer_request(model.uri.split("/")[1], [model.row]))


def monitored_server(settings: Settings, model: BenchModel, free_port: Callable[[], int],
                     grpc: bool = False) -> Server:
    """Vigil streaming every batch's profile to a real monitor process (started first); `grpc` as in vigil_server.

    Called right before the server starts: it empties the prediction log and the spools of
    any earlier run, so the run measures this server's own rows. (Left in
    place, one agent's first compaction merged 358,692 rows of an earlier run's log inside a
    measured run and doubled its CPU per request.)
    """
    for leftover in (settings.prediction_log_dir or settings.home / "predictions", settings.spool_dir,
                     settings.raw_spool_dir):
        shutil.rmtree(leftover, ignore_errors=True)
    monitor_port = free_port()
    monitor_url = f"http://127.0.0.1:{monitor_port}"
    settings = config.replace(settings, monitor_url=monitor_url, monitor_port=monitor_port)
    monitor = Companion("monitor", [sys.executable, "-m", "monitor", "--port", str(monitor_port)],
                        {**config.process_env(settings), **config.to_env(settings)}, f"{monitor_url}/healthz")
    server = vigil_server(settings, model, VIGIL_MONITORED, free_port, grpc=grpc, profile_stream=True,
                          prediction_log="")
    server.companions.append(monitor)
    return server


def peers(settings: Settings, model: BenchModel, free_port: Callable[[], int]) -> Iterator[Server]:
    """The seed-style app, `mlflow models serve` and the bare-Starlette ceiling."""
    py = sys.executable
    base_env = config.process_env(settings)
    port = free_port()
    yield Server(
        SEED, model.label,
        [py, "-m", "uvicorn", "loadtest.peers.seed_app:app", "--port", str(port), "--log-level", "warning",
         "--no-access-log"],
        {**base_env, "SEED_MODEL_URI": model.uri}, port, json.dumps([model.row]), ready_path="/metrics",
        check=lambda a: len(a["prediction"]) == 1,
    )
    port = free_port()
    yield Server(
        MLFLOW, model.label,
        [py, "-m", "mlflow", "models", "serve", "-m", model.uri, "--env-manager", "local", "--host", "127.0.0.1",
         "-p", str(port), "-w", "1"],
        # mlflow execs `uvicorn` by name: the venv's bin must be on PATH
        {**base_env, "PATH": f"{Path(py).parent}{os.pathsep}{base_env.get('PATH', '')}"}, port,
        json.dumps({"dataframe_split": {"columns": model.columns, "data": [model.row]}}),
        path="/invocations", ready_path="/ping", check=lambda a: len(a["predictions"]) == 1,
    )
    port = free_port()
    yield Server(
        CEILING, model.label,
        [py, "-m", "uvicorn", "loadtest.peers.bare_app:app", "--port", str(port), "--loop", "uvloop", "--http",
         "httptools", "--log-level", "warning", "--no-access-log"],
        base_env, port, json.dumps({"instances": [model.row]}),
    )


def servers_for(settings: Settings, models: list[BenchModel], free_port: Callable[[], int]) -> Iterator[Server]:
    """Every server of the comparison, model by model; ports are picked as they start."""
    for model in models:
        yield vigil_server(settings, model, VIGIL_HTTP, free_port)
        yield vigil_server(settings, model, VIGIL_GRPC, free_port)
        yield vigil_server(settings, model, VIGIL_GRPC_STREAM, free_port)
        if model.heavy:
            # the heavy model is about batching: the same service with batches of one row
            yield vigil_server(settings, model, VIGIL_UNBATCHED, free_port, max_batch_size=1)
            continue
        yield monitored_server(settings, model, free_port)
        yield from peers(settings, model, free_port)
        yield bare_grpc_server(settings, model, free_port)
