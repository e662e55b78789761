"""Writing one training run to MLflow and registering the model it produced."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import pandas as pd
from sklearn.pipeline import Pipeline

from lifecycle.errors import TrainError
from lifecycle.fair import claim_fixed_holdout, digest
from vigil import artifacts
from vigil.config import Settings
from vigil.registry import connect, ensure_experiment

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.models.model import ModelInfo

READY_TIMEOUT_S = 60.0
# Pinned instead of inferred: MLflow's requirement inference re-imports the model in a
# subprocess (seconds per train) and still guesses; these are what the model needs.
_REQUIREMENTS = ("mlflow", "scikit-learn", "cloudpickle", "numpy", "scipy", "pandas")
# cloudpickle rather than MLflow's default skops: skops re-loads the model at save time
# against a type allow-list (~0.7 s per train) that MLflow then stores inside the model
# itself, and MLflow 3.17 requires MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true to load
# either format. The converter, the only reader, loads from Vigil's own registry.
SERIALIZATION_FORMAT = "cloudpickle"


@dataclass(frozen=True)
class Registered:
    version: str
    run_id: str


def log_and_register(
    settings: Settings,
    *,
    name: str,
    model: Pipeline,
    X_train: pd.DataFrame,
    params: dict[str, str],
    metrics: dict[str, float],
    reference: pd.DataFrame,
    holdout: pd.DataFrame,
    tags: dict[str, str],
    summary_tail: str,
) -> Registered:
    """Log model, params, metrics and parquet artifacts in one run; register a READY version."""
    import mlflow
    from mlflow.models import infer_signature

    with _quiet_mlflow():
        client = connect(settings)
        experiment_id = ensure_experiment(client, settings)
        with mlflow.start_run(experiment_id=experiment_id, run_name=f"train-{name}") as run:
            run_id = run.info.run_id
            mlflow.log_params(params)
            mlflow.log_metrics(metrics)
            signature = infer_signature(X_train, model.predict(X_train))
            info = mlflow.sklearn.log_model(
                model,
                name=artifacts.ARTIFACT_MODEL,
                signature=signature,
                input_example=X_train.head(5),
                pip_requirements=pinned_requirements(),
                serialization_format=SERIALIZATION_FORMAT,
            )
            _log_parquet(reference, artifacts.ARTIFACT_REFERENCE)
            _log_parquet(holdout, artifacts.ARTIFACT_HOLDOUT)
        rows = digest(holdout)
        version = _register(client, name, info, run_id,
                            {**tags, artifacts.TAG_RUN_ID: run_id, artifacts.TAG_HOLDOUT_DIGEST: rows})
        claim_fixed_holdout(client, name, run_id, rows)  # the first version's holdout judges every later one
    client.update_model_version(name, version, description=f"{name} v{version}: {summary_tail}")
    return Registered(version=version, run_id=run_id)


def pinned_requirements() -> list[str]:
    """`pkg==version` for what loading the sklearn model needs, as installed here."""
    pins = []
    for package in _REQUIREMENTS:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{package}=={metadata.version(package)}")
    return pins


def _register(client: "MlflowClient", name: str, info: "ModelInfo", run_id: str, tags: dict[str, str]) -> str:
    """Create the registered model if new, then a version of it; return the version once READY.

    The client API is used rather than `mlflow.register_model`, which prints progress
    lines to stderr that the CLI has no use for.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    version = client.create_model_version(
        name,
        source=info.model_uri,
        run_id=run_id,
        tags=tags,
        model_id=info.model_id,
        await_creation_for=int(READY_TIMEOUT_S),
    )
    _wait_ready(client, name, str(version.version))
    return str(version.version)


def _log_parquet(frame: pd.DataFrame, artifact: str) -> None:
    import mlflow

    folder, _, filename = artifact.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path), artifact_path=folder or None)


def _wait_ready(client: "MlflowClient", name: str, version: str) -> None:
    # SQLite registers synchronously, but a remote registry may still be copying files.
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        status = client.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise TrainError(f"model {name} version {version} did not become READY (status {status})")
        time.sleep(0.2)


@contextlib.contextmanager
def _quiet_mlflow() -> Iterator[None]:
    """Silence MLflow's per-run chatter (registration notices, env probing warnings)."""
    # mlflow.sklearn warns on every cloudpickle save; the choice is deliberate (see
    # SERIALIZATION_FORMAT), so only its errors get through.
    quiet = {"mlflow": logging.WARNING, "alembic": logging.WARNING, "mlflow.sklearn": logging.ERROR}
    loggers = [logging.getLogger(n) for n in quiet]
    levels = [lg.level for lg in loggers]
    for lg, level in zip(loggers, quiet.values()):
        lg.setLevel(level)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
