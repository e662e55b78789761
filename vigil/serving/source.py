"""Where the served model comes from: a packed bento model, a local folder, or the registry.

Whatever the source, the result is a local folder holding `model.onnx` + `schema.json`
(+ `parity.json`): serving never unpickles anything.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from vigil import artifacts
from vigil.config import Settings
from vigil.registry import ModelRef, RegistryError

REQUIRED_FILES = (artifacts.ONNX_FILE, artifacts.SCHEMA_FILE)


class SourceError(RuntimeError):
    """The configured model cannot be found, is not servable, or cannot be downloaded."""


@dataclass(frozen=True)
class ModelFolder:
    """A local folder ready to serve, and where it came from (for logs and /metadata)."""

    path: Path
    origin: str
    version: str | None = None  # the registry version, when the model came from the registry


def is_model_folder(path: Path) -> bool:
    return all((path / name).is_file() for name in REQUIRED_FILES)


def locate(settings: Settings, packed: Path | None = None) -> ModelFolder:
    """The folder to serve: the bento's packed model if any, else `settings.model`."""
    if packed is not None:
        if not is_model_folder(packed):
            raise SourceError(f"packed bento model at {packed} lacks {' / '.join(REQUIRED_FILES)}")
        return ModelFolder(packed, "bento")
    spec = settings.model.strip()
    if spec.startswith("models:/"):
        return download(settings, ModelRef.parse(spec))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not is_model_folder(path):
            raise SourceError(f"VIGIL_MODEL folder {path} must contain {' and '.join(REQUIRED_FILES)}")
        return ModelFolder(path.resolve(), "local")
    raise SourceError(
        f"VIGIL_MODEL={spec!r} is neither a models:/NAME/VERSION or models:/NAME@ALIAS URI "
        "nor an existing folder with model.onnx + schema.json"
    )


def download(settings: Settings, ref: ModelRef) -> ModelFolder:
    """Resolve `ref` in the registry and fetch its ONNX folder into the model cache."""
    from vigil.registry import connect, resolve_version

    try:
        client = connect(settings)
        version = resolve_version(client, ref)
    except RegistryError as exc:
        raise SourceError(str(exc)) from None
    except Exception as exc:  # an unreachable tracking server surfaces as many types
        raise SourceError(f"cannot reach the model registry at {settings.mlflow_uri}: {exc}") from None
    tags = version.tags or {}
    label = f"{ref.name} version {version.version}"
    if tags.get(artifacts.TAG_SERVABLE) != "true":
        why = tags.get(artifacts.TAG_SERVABLE_REASON) or "it has not been converted (run `vigil convert`)"
        raise SourceError(f"{label} is not servable: {why}")
    uri = tags.get(artifacts.TAG_ONNX_URI)
    if not uri:
        raise SourceError(f"{label} is marked servable but has no {artifacts.TAG_ONNX_URI} tag")
    target = settings.model_cache / ref.name / str(version.version)
    if not is_model_folder(target):
        _fetch(uri, target)
    return ModelFolder(target, f"models:/{ref.name}/{version.version}", str(version.version))


def _fetch(uri: str, target: Path) -> None:
    """Download into a temp folder, then rename: concurrent workers never see half a model."""
    import mlflow.artifacts

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=target.parent))
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(staging)))
        if not is_model_folder(local):
            raise SourceError(f"{uri} does not contain {' and '.join(REQUIRED_FILES)}")
        try:
            os.replace(local, target)
        except OSError:
            if not is_model_folder(target):  # another worker won the race otherwise
                raise
    except SourceError:
        raise
    except Exception as exc:
        raise SourceError(f"cannot download the ONNX model from {uri}: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
