"""Talking to the MLflow tracking server and model registry with Vigil's settings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vigil.config import Settings, apply_to_process

if TYPE_CHECKING:  # mlflow is heavy to import; only the functions below need it
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

EXPERIMENT = "vigil"

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w-]+))$")


class RegistryError(RuntimeError):
    """A model URI that does not resolve, or a registry that cannot be reached."""

    def __init__(self, message: str, error_code: str = "") -> None:
        super().__init__(message)
        self.error_code = error_code  # MLflow's code, e.g. RESOURCE_DOES_NOT_EXIST ("" if unknown)

    @property
    def missing(self) -> bool:
        """True when the registry answered that the model/version/alias does not exist."""
        return self.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


@dataclass(frozen=True)
class ModelRef:
    """A parsed `models:/NAME/VERSION` or `models:/NAME@ALIAS` URI."""

    name: str
    version: str | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, uri: str) -> "ModelRef":
        match = _MODELS_URI.match(uri.strip())
        if not match:
            raise RegistryError(f"not a model URI: {uri!r} (expected models:/NAME/VERSION or models:/NAME@ALIAS)")
        return cls(match["name"], match["version"], match["alias"])

    def __str__(self) -> str:
        return f"models:/{self.name}/{self.version}" if self.version else f"models:/{self.name}@{self.alias}"


def connect(settings: Settings) -> "MlflowClient":
    """Point MLflow at Vigil's tracking/registry URI and return a client."""
    apply_to_process(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(settings.mlflow_uri)
    mlflow.set_registry_uri(settings.mlflow_uri)
    return MlflowClient(tracking_uri=settings.mlflow_uri, registry_uri=settings.mlflow_uri)


def ensure_experiment(client: "MlflowClient", settings: Settings, name: str = EXPERIMENT) -> str:
    """The experiment id for `name`, created with artifacts under VIGIL_HOME if new.

    With a SQLite backend MLflow would otherwise put artifacts in ./mlruns relative to
    whatever directory the command ran in.
    """
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if not settings.tracking_uri:
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
        location = settings.artifact_root.as_uri()
    return client.create_experiment(name, artifact_location=location)


def resolve_version(client: "MlflowClient", ref: ModelRef | str) -> "ModelVersion":
    """The model version a URI points at (alias resolved now)."""
    from mlflow.exceptions import MlflowException

    if isinstance(ref, str):
        ref = ModelRef.parse(ref)
    try:
        if ref.version is not None:
            return client.get_model_version(ref.name, ref.version)
        return client.get_model_version_by_alias(ref.name, ref.alias)
    except MlflowException as exc:
        raise RegistryError(f"cannot resolve {ref}: {exc.message}", exc.error_code) from None
