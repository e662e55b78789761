"""The monitor's drift verdict offline: files in, the same comparison the running monitor makes.

A reference is either a CSV/Parquet file (features, optionally `prediction` and the target)
or a registered version (`models:/iris/1`, its stored reference). Each current file is
profiled the way the serving side profiles live batches (vigil/profile_builder.py, features
as the model saw them, the classifier's predicted label as a category) and compared with
`monitor.compare.compare_with_reference` — the function behind the monitor's /v1/drift — so
a file gets the verdict its rows would get as one monitor window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from monitor.compare import DriftPolicy, compare_with_reference
from monitor.data_quality import data_quality
from monitor.reference import PREDICTION, PROBA, Reference, ReferenceStore, build_reference
from vigil import artifacts


class OfflineError(ValueError):
    """A file or reference that cannot be compared, in one sentence."""


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame (by extension; CSV otherwise)."""
    p = Path(path)
    if not p.exists():
        raise OfflineError(f"{p}: no such file")
    try:
        if p.suffix.lower() in (".parquet", ".pq"):
            return pd.read_parquet(p)
        return pd.read_csv(p)
    except Exception as exc:  # pandas/pyarrow raise many types on a bad file
        raise OfflineError(f"{p}: cannot read as {'Parquet' if p.suffix.lower() in ('.parquet', '.pq') else 'CSV'}: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def reference_from_frame(raw: pd.DataFrame, categorical: Sequence[str] = (), target: str = "target",
                         task: str | None = None, name: str = "file") -> Reference:
    """A monitor `Reference` built from a file's rows (the monitor's own split of the columns)."""
    frame = raw.copy()
    for column in categorical:
        if column not in frame.columns:
            raise OfflineError(f"--categorical names {column!r}, which the reference does not have")
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None).map(
            lambda v: v if v is None else str(v))
    if task is None:
        pred = frame[PREDICTION] if PREDICTION in frame.columns else None
        numeric_pred = pred is not None and pd.api.types.is_float_dtype(pred) and pred.nunique() > 20
        task = artifacts.TASK_REGRESSION if numeric_pred else artifacts.TASK_CLASSIFICATION
    if PREDICTION in frame.columns:
        return build_reference(name, "offline", frame, task, target)
    features = [c for c in frame.columns if c != target and not str(c).startswith(PROBA)]
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
    cats = [c for c in features if c not in numeric]
    for column in cats:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None).map(
            lambda v: v if v is None else str(v))
    labels = raw[target] if target in raw.columns else pd.Series(dtype=object)
    return Reference(name, "offline", task, target, frame[features], labels, numeric, cats)


def load_reference(spec: str, settings: Any = None, categorical: Sequence[str] = (), target: str = "target") -> Reference:
    """`models:/<name>/<version>` (the registered version's stored reference) or a CSV/Parquet file."""
    if spec.startswith("models:/"):
        parts = spec[len("models:/"):].strip("/").split("/")
        if len(parts) != 2 or not all(parts):
            raise OfflineError(f"{spec!r}: expected models:/<name>/<version>")
        if settings is None:
            from vigil.config import load

            settings = load()
        return ReferenceStore(settings).get(parts[0], parts[1])
    return reference_from_frame(read_table(spec), categorical, target)


def current_view(reference: Reference, frame: pd.DataFrame) -> Any:
    """The profile of a current file's rows, built like the serving side builds live batches."""
    from vigil.profile_builder import build_view

    missing = [c for c in reference.features if c not in frame.columns]
    if missing:
        raise OfflineError(f"missing column(s) of the reference: {', '.join(map(str, missing))}")
    columns: dict[str, np.ndarray] = {}
    for c in reference.features:
        if c in reference.categorical:
            values = frame[c].astype(object).where(frame[c].notna(), None)
            columns[c] = values.map(lambda v: v if v is None else str(v)).to_numpy(dtype=object)
        else:
            columns[c] = pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=float)
    categorical = set(reference.categorical)
    if PREDICTION in frame.columns and PREDICTION in reference.frame.columns:
        pred = frame[PREDICTION]
        if reference.task == artifacts.TASK_CLASSIFICATION:
            columns[PREDICTION] = pred.map(lambda v: str(v.item() if isinstance(v, np.generic) else v)).to_numpy(dtype=object)
            categorical.add(PREDICTION)
        else:
            columns[PREDICTION] = pd.to_numeric(pred, errors="coerce").to_numpy(dtype=float)
    return build_view(columns, categorical=categorical)


@dataclass
class FileVerdict:
    """One current file's comparison."""

    file: str
    rows: int
    result: dict[str, Any]  # WindowDrift.to_dict() + data_quality
    compute_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "rows": self.rows, **self.result, "compute_ms": round(self.compute_ms, 3)}


def compare_files(reference: Reference, files: Sequence[str | Path], policy: DriftPolicy = DriftPolicy()) -> list[FileVerdict]:
    """Each file against the reference, in order; the reference is profiled once, before the clock."""
    reference.profile()
    compare_with_reference(reference, current_view(reference, reference.frame.head(8)), policy)  # warm-up: imports
    out = []
    for path in files:
        frame = read_table(path)
        started = time.perf_counter()
        view = current_view(reference, frame)
        verdict = compare_with_reference(reference, view, policy).to_dict()
        elapsed = (time.perf_counter() - started) * 1e3
        verdict["data_quality"] = data_quality(view, reference)
        out.append(FileVerdict(str(path), len(frame), verdict, elapsed))
    return out


def format_table(v: FileVerdict) -> str:
    """A plain-text table of one file's verdict: the dataset line, then features by severity."""
    r = v.result
    head = (f"{v.file}: {r['severity'].upper()} drift (dataset_drift={r['dataset_drift']}), "
            f"{r['drift_share']:.0%} of importance in major drift, {v.rows} rows, {v.compute_ms:.1f} ms")
    lines = [head, f"  {'column':<28} {'severity':<8} {'method':<6} {'statistic':>10} {'p-value':>10} {'PSI':>8} {'weight':>7}"]
    entries = list(r["features"].values())
    if r.get("prediction_drift"):
        entries.insert(0, dict(r["prediction_drift"], column=f"{PREDICTION} (output)", weight=None))
    for f in entries:
        weight = "" if f.get("weight") is None else f"{f['weight']:.2f}"
        lines.append(f"  {str(f['column'])[:28]:<28} {f['severity']:<8} {f['method']:<6} {_num(f['statistic']):>10} "
                     f"{_num(f['p_value']):>10} {_num(f['effect_size']):>8} {weight:>7}")
    return "\n".join(lines)


def _num(x: Any) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if abs(x) < 1e-3 or abs(x) >= 1e4 else f"{x:.4f}"
