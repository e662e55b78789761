"""The training reference of a model version: what live traffic is compared with.

`vigil train` logs `vigil/reference.parquet` on the version's run (vigil/artifacts.py).
The monitor copies it once into its own cache (``<home>/monitor/references/<name>/<version>``)
with a `meta.json` holding the version's task and target, so later lookups — and monitor
restarts — never touch MLflow. `install_reference` fills that cache directly from a parquet
file (tests, or models that never went through the registry).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from vigil import artifacts
from vigil.config import Settings

PREDICTION = artifacts.REFERENCE_PREDICTION_COLUMN
PROBA = artifacts.REFERENCE_PROBA_PREFIX


class UnknownModel(LookupError):
    """No reference exists for this model version."""


@dataclass
class Reference:
    """A version's reference rows, split into features and outputs, and their profile."""

    model: str
    version: str
    task: str
    target: str
    frame: pd.DataFrame  # features + prediction (+ proba_*), converted like the producer does
    labels: pd.Series
    numeric: list[str]
    categorical: list[str]
    metrics: dict[str, float] = field(default_factory=dict)
    importance: dict[str, float] = field(default_factory=dict)  # permutation importance; {} = equal weights
    _profile: Any = None

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical

    @property
    def outputs(self) -> list[str]:
        return [c for c in self.frame.columns if c == PREDICTION or c.startswith(PROBA)]

    def profile(self) -> Any:
        """The whylogs profile of the reference (built once)."""
        if self._profile is None:
            from vigil.whylogs_compat import profile

            self._profile = profile(self.frame)
        return self._profile

    def value_range(self, column: str) -> tuple[float, float]:
        values = pd.to_numeric(self.frame[column], errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        return (float(values.min()), float(values.max())) if len(values) else (np.nan, np.nan)

    def categories(self, column: str) -> set[str]:
        return set(self.frame[column].dropna().astype(str))


def build_reference(model: str, version: str, raw: pd.DataFrame, task: str, target: str) -> Reference:
    """Split a reference parquet's columns the way the producer profiles live batches."""
    if PREDICTION not in raw.columns:
        raise ValueError(f"reference of {model}/{version} has no {PREDICTION!r} column")
    outputs = [c for c in raw.columns if c == PREDICTION or c.startswith(PROBA)]
    features = [c for c in raw.columns if c not in outputs and c != target]
    frame = raw[features + outputs].copy()
    if task == artifacts.TASK_CLASSIFICATION:
        frame[PREDICTION] = frame[PREDICTION].map(lambda v: str(v.item() if isinstance(v, np.generic) else v))
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    categorical = [c for c in features if c not in numeric]
    for column in categorical:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None).map(
            lambda v: v if v is None else str(v)
        )
    labels = raw[target] if target in raw.columns else pd.Series(dtype=object)
    return Reference(model, version, task, target, frame, labels, numeric, categorical)


def install_reference(
    settings: Settings, model: str, version: str, parquet: Path, task: str, target: str,
    metrics: dict[str, float] | None = None, importance: dict[str, float] | None = None,
) -> Path:
    """Put a reference (and optionally its holdout metrics) into the monitor's cache without MLflow."""
    if task not in (artifacts.TASK_CLASSIFICATION, artifacts.TASK_REGRESSION):
        raise ValueError(f"task must be classification or regression, got {task!r}")
    folder = _cache_dir(settings, model, version)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(parquet, folder / "reference.parquet")
    (folder / "meta.json").write_text(json.dumps({"task": task, "target": target, "metrics": metrics or {},
                                                 "importance": importance or {}}))
    return folder


def _cache_dir(settings: Settings, model: str, version: str) -> Path:
    safe = model.replace("/", "_")
    return settings.monitor_home / "references" / safe / str(version)


def _fetch_from_registry(settings: Settings, model: str, version: str, folder: Path) -> None:
    """Download the reference artifact and the task/target tags of a registered version."""
    from vigil.registry import ModelRef, RegistryError, connect, resolve_version

    client = connect(settings)
    try:
        mv = resolve_version(client, ModelRef(model, str(version)))
    except RegistryError as exc:
        raise UnknownModel(f"unknown model version {model}/{version}: {exc}") from None
    tags = dict(mv.tags or {})
    run_id = tags.get(artifacts.TAG_RUN_ID) or mv.run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, artifacts.ARTIFACT_REFERENCE, tmp)
        except Exception as exc:  # MlflowException or OSError: the artifact is not there
            raise UnknownModel(f"{model}/{version} has no {artifacts.ARTIFACT_REFERENCE} artifact: {exc}") from None
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, folder / "reference.parquet")
        importance = _download_importance(client, run_id, tmp)
    metrics = {k[len(artifacts.TAG_METRIC_PREFIX):]: float(v) for k, v in tags.items() if k.startswith(artifacts.TAG_METRIC_PREFIX)}
    meta = {
        "task": tags.get(artifacts.TAG_TASK, artifacts.TASK_CLASSIFICATION),
        "target": tags.get(artifacts.TAG_TARGET, "target"),
        "metrics": metrics,
        "importance": importance,
    }
    (folder / "meta.json").write_text(json.dumps(meta))


def _download_importance(client: Any, run_id: str, tmp: str) -> dict[str, float]:
    """The version's feature importance (written by `vigil convert`); {} when it has none."""
    try:
        local = client.download_artifacts(run_id, artifacts.ARTIFACT_IMPORTANCE, tmp)
        data = json.loads(Path(local).read_text())
    except Exception:  # MlflowException, OSError or bad JSON: fall back to equal weights
        return {}
    return {str(k): float(v) for k, v in (data.get("importance") or {}).items()}


class ReferenceStore:
    """References by (model, version): memory, then the disk cache, then the registry."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._cache: dict[tuple[str, str], Reference] = {}
        self._lock = threading.Lock()

    def get(self, model: str, version: str) -> Reference:
        key = (model, str(version))
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._load(*key)
            return self._cache[key]

    def _load(self, model: str, version: str) -> Reference:
        folder = _cache_dir(self.settings, model, version)
        if not (folder / "meta.json").exists():
            _fetch_from_registry(self.settings, model, version, folder)
        meta = json.loads((folder / "meta.json").read_text())
        raw = pd.read_parquet(folder / "reference.parquet")
        ref = build_reference(model, version, raw, meta["task"], meta["target"])
        ref.metrics = meta.get("metrics", {})
        ref.importance = meta.get("importance", {})
        return ref
