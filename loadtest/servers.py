"""The servers `loadtest.bench` compares, each started the way its users start it."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Callable, Iterator

from vigil import config
from vigil.config import Settings


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


@dataclass(frozen=True)
class BenchModel:
    """A registered + converted model and one row of its data."""

    label: str  # for the table, e.g. "iris LogisticRegression"
    uri: str  # models:/NAME/VERSION
    columns: list[str]
    row: list[float]


def prepare_models(settings: Settings, heavy: bool) -> list[BenchModel]:
    """Train and convert the benchmark models into the bench registry."""
    from converter import convert_version
    from lifecycle import train
    from vigil.registry import ModelRef

    wanted = [("iris", "logreg", {}, "iris LogisticRegression")]
    if heavy:
        wanted.append(("breast_cancer", "random-forest", {"n_estimators": "300"}, "breast_cancer RandomForest(300)"))
    models = []
    for dataset, estimator, params, label in wanted:
        result = train(settings, dataset=dataset, estimator=estimator, params=params, name=f"bench-{dataset}")
        convert_version(settings, ModelRef(result.name, version=result.version), progress=False)
        from lifecycle.datasets import load_dataset

        frame, _, _ = load_dataset(dataset)
        models.append(BenchModel(label, f"models:/{result.name}/{result.version}", list(frame.columns),
                                 [float(v) for v in frame.iloc[0].tolist()]))
    return models


def servers_for(settings: Settings, models: list[BenchModel], free_port: Callable[[], int]) -> Iterator[Server]:
    """Every server of the comparison, model by model; ports are picked as they start."""
    from loadtest.grpc_load import infer_request
    from vigil.serving.launch import serve_command

    py = sys.executable
    base_env = config.process_env(settings)
    for model in models:
        vigil_body = json.dumps({"instances": [model.row]})
        is_heavy = "RandomForest" in model.label
        port = free_port()
        # grpc_port=0: HTTP-only runs must not bind the default gRPC port
        argv, env = serve_command(config.replace(settings, model=model.uri, grpc_port=0), port=port, workers=1)
        yield Server("vigil-http", model.label, argv, env, port, vigil_body,
                     check=lambda a: "predictions" in a and len(a["predictions"]) == 1)
        port, grpc_port = free_port(), free_port()
        argv, env = serve_command(config.replace(settings, model=model.uri, grpc_port=grpc_port), port=port, workers=1)
        yield Server("vigil-grpc", model.label, argv, env, port, vigil_body, grpc_port=grpc_port,
                     grpc_message=infer_request(model.uri.split("/")[1], [model.row]))
        if is_heavy:
            port = free_port()
            argv, env = serve_command(config.replace(settings, model=model.uri, max_batch_size=1, grpc_port=0), port=port,
                                      workers=1)
            yield Server("vigil-http-unbatched", model.label, argv, env, port, vigil_body)
            continue  # the peers' story is told on iris; the heavy model is about batching
        port = free_port()
        yield Server(
            "seed-fastapi-pyfunc", model.label,
            [py, "-m", "uvicorn", "loadtest.peers.seed_app:app", "--port", str(port), "--log-level", "warning",
             "--no-access-log"],
            {**base_env, "SEED_MODEL_URI": model.uri}, port, json.dumps([model.row]), ready_path="/metrics",
            check=lambda a: len(a["prediction"]) == 1,
        )
        port = free_port()
        yield Server(
            "mlflow-models-serve", model.label,
            [py, "-m", "mlflow", "models", "serve", "-m", model.uri, "--env-manager", "local", "--host", "127.0.0.1",
             "-p", str(port), "-w", "1"],
            base_env, port, json.dumps({"dataframe_split": {"columns": model.columns, "data": [model.row]}}),
            path="/invocations", ready_path="/ping", check=lambda a: len(a["predictions"]) == 1,
        )
        port = free_port()
        yield Server(
            "bare-starlette", model.label,
            [py, "-m", "uvicorn", "loadtest.peers.bare_app:app", "--port", str(port), "--loop", "uvloop", "--http",
             "httptools", "--log-level", "warning", "--no-access-log"],
            base_env, port, vigil_body,
        )
