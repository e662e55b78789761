"""Where the served model comes from: a packed bento model, a local folder, or the registry.

Whatever the source, the result is a local folder holding `model.onnx` + `schema.json`
(+ `parity.json`): serving never unpickles anything.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from vigil import artifacts
from vigil.config import Settings
from vigil.registry import ModelRef, RegistryError

REQUIRED_FILES = (artifacts.ONNX_FILE, artifacts.SCHEMA_FILE)
log = logging.getLogger("bentoml.vigil")


class SourceError(RuntimeError):
    """The configured model cannot be found, is not servable, or cannot be downloaded."""


class RegistryUnreachable(SourceError):
    """The registry did not answer and the model cache holds no copy of the model."""


@dataclass(frozen=True)
class ModelFolder:
    """A local folder ready to serve, and where it came from (for logs and /metadata)."""

    path: Path
    origin: str
    version: str | None = None  # the registry version, when the model came from the registry
    degraded: str | None = None  # why this is a cached fallback (registry unreachable), else None


def is_model_folder(path: Path) -> bool:
    return all((path / name).is_file() for name in REQUIRED_FILES)


def locate(settings: Settings, packed: Path | None = None) -> ModelFolder:
    """The folder to serve: `settings.model_uri`, or the bento's packed model.

    A bento serves its packed model unless VIGIL_MODEL is set: then it resolves that URI
    (e.g. an alias, so replicas of one bento follow promotions), and falls back to the
    packed model only when the registry is unreachable and nothing is cached.
    """
    if packed is not None:
        if not is_model_folder(packed):
            raise SourceError(f"packed bento model at {packed} lacks {' / '.join(REQUIRED_FILES)}")
        if not settings.model.strip():
            return ModelFolder(packed, "bento")
        try:
            return _locate_spec(settings, settings.model_uri)
        except RegistryUnreachable as exc:  # a wrong name/alias or an unservable version still fails
            log.warning("vigil: %s; serving the bento's packed model (degraded)", exc)
            return ModelFolder(packed, "bento (registry unreachable)", degraded=str(exc))
    return _locate_spec(settings, settings.model_uri)


def _locate_spec(settings: Settings, spec: str) -> ModelFolder:
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
        if exc.missing:  # the registry answered: a wrong name/alias is the user's to fix
            raise SourceError(str(exc)) from None
        return cached(settings, ref, f"registry unreachable at {settings.mlflow_uri}: {_one_line(exc)}")
    except Exception as exc:  # an unreachable tracking server surfaces as many types
        return cached(settings, ref, f"registry unreachable at {settings.mlflow_uri}: {_one_line(exc)}")
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
    if ref.alias:
        _remember(settings, ref, str(version.version))
    return ModelFolder(target, f"models:/{ref.name}/{version.version}", str(version.version))


def _pointer(settings: Settings, ref: ModelRef) -> Path:
    return settings.model_cache / ref.name / f"@{ref.alias}.json"


def _remember(settings: Settings, ref: ModelRef, version: str) -> None:
    """Record which version the alias resolved to, for `cached` when the registry is down."""
    pointer = _pointer(settings, ref)
    tmp = pointer.with_name(f".{pointer.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"alias": ref.alias, "version": version, "resolved_at": time.time()}))
    os.replace(tmp, pointer)  # atomic: workers resolving at once never leave half a file


def cached(settings: Settings, ref: ModelRef, why: str) -> ModelFolder:
    """The last good folder for `ref` in the model cache, marked degraded; SourceError if none.

    An alias falls back to the version it last resolved to (its pointer file), else to the
    newest cached version of that name; a pinned version to its own folder only.
    """
    folder = settings.model_cache / ref.name
    version = ref.version
    if version is None:
        version = _pointed(_pointer(settings, ref)) or _newest(folder)
    if version is None or not is_model_folder(folder / version):
        raise RegistryUnreachable(f"{why}; and no cached copy of {ref} under {folder}") from None
    log.warning("vigil: %s; serving the cached %s version %s (degraded)", why, ref.name, version)
    return ModelFolder(folder / version, f"models:/{ref.name}/{version} (cached)", version, degraded=why)


def _pointed(pointer: Path) -> str | None:
    try:
        return str(json.loads(pointer.read_text())["version"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _newest(folder: Path) -> str | None:
    versions = [p.name for p in folder.glob("*") if p.name.isdigit() and is_model_folder(p)] if folder.is_dir() else []
    return max(versions, key=int, default=None)


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


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
