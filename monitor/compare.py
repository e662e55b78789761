"""A window's drift verdict: per-feature severities weighed by importance, plus prediction drift.

The false-alarm rate is set by one number, `alpha`: each of the k compared columns (the
features and the prediction) is tested at alpha / k (Bonferroni), so a window drawn from
the reference itself gets any significant column with probability at most alpha, at any
window size. Severity then asks for an effect size on top (PSI, see monitor/drift.py), so
the real rate is lower still. With alpha = 0.001 and 60 s windows that is at most 1.44
false alarms a day, and in practice none (see README, "Drift").

The dataset is `major` when the importance-weighted share of major features reaches
`share`, or when the prediction itself drifted majorly (what the model outputs moved: the
model relies on what changed); `minor` when any column is minor or major; else `none`.
Only `major` sets `dataset_drift`, which alerts and triggers retraining.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Collection, Mapping

from monitor import drift as dm
from monitor.drift import MAJOR, MINOR, NONE, SEVERITY_LEVEL, ColumnDrift


@dataclass(frozen=True)
class DriftPolicy:
    """The knobs of the verdict (VIGIL_MONITOR_DRIFT_* settings)."""

    alpha: float = 0.001
    psi_minor: float = dm.PSI_MINOR
    psi_major: float = dm.PSI_MAJOR
    share: float = 0.3  # of the model's importance: a third of what it relies on moved majorly

    @classmethod
    def from_settings(cls, settings: Any) -> "DriftPolicy":
        return cls(settings.monitor_drift_alpha, settings.monitor_drift_psi_minor,
                   settings.monitor_drift_psi_major, settings.monitor_drift_share)


@dataclass(frozen=True)
class WindowDrift:
    """Everything the window's verdict rests on."""

    severity: str
    drift_share: float  # importance-weighted share of features with major drift
    features: list[ColumnDrift]  # most severe and most important first
    prediction: ColumnDrift | None
    alpha_per_test: float
    policy: DriftPolicy = DriftPolicy()

    @property
    def dataset_drift(self) -> bool:
        return self.severity == MAJOR

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_drift": self.dataset_drift,
            "severity": self.severity,
            "drift_share": self.drift_share,
            "alpha_per_test": self.alpha_per_test,
            "psi_levels": {"minor": self.policy.psi_minor, "major": self.policy.psi_major},
            "features": {f.column: f.to_dict() for f in self.features},
            "driving_features": [f.column for f in self.features if f.severity != NONE],
            "prediction_drift": self.prediction.to_dict() if self.prediction else None,
        }


def weights(features: Collection[str], importance: Mapping[str, float] | None) -> dict[str, float]:
    """Importance normalised to sum 1 over `features` (negatives as 0); equal when unknown."""
    raw = {f: max(0.0, float((importance or {}).get(f, 0.0))) for f in features}
    total = sum(raw.values())
    if not features:
        return {}
    if total <= 0:
        return {f: 1.0 / len(features) for f in features}
    return {f: v / total for f, v in raw.items()}


def _compare_columns(reference_view: Any, current_view: Any, columns: list[tuple[str, bool]], alpha: float,
                     policy: DriftPolicy) -> dict[str, ColumnDrift]:
    """Each column's verdict; the numeric p-values in one vectorised call (scipy's overhead is per call)."""
    out: dict[str, ColumnDrift] = {}
    numeric: list[tuple[str, dm.NumericStats]] = []
    for name, is_categorical in columns:
        if is_categorical:
            r = dm.categorical_drift(reference_view, current_view, name, alpha, policy.psi_minor, policy.psi_major)
            if r is not None:
                out[name] = r
            continue
        ref, cur = dm.kll(reference_view, name), dm.kll(current_view, name)
        if ref is not None and cur is not None:
            numeric.append((name, dm.numeric_stats(ref, cur)))
    if numeric:
        p = dm.ks_p_values([s.d for _, s in numeric], [s.reference_rows for _, s in numeric],
                           [s.rows for _, s in numeric])
        for (name, s), p_value in zip(numeric, p):
            out[name] = dm.numeric_verdict(name, s, float(p_value), alpha, policy.psi_minor, policy.psi_major)
    return out


def compare_window(reference_view: Any, current_view: Any, features: list[str], categorical: Collection[str] = (),
                   prediction: str | None = None, prediction_categorical: bool = True,
                   importance: Mapping[str, float] | None = None, policy: DriftPolicy = DriftPolicy()) -> WindowDrift:
    """Compare a window's profile with the reference's, column by column, and weigh the verdict."""
    categorical = set(categorical)
    tested = len(features) + (1 if prediction else 0)
    alpha = policy.alpha / max(1, tested)
    w = weights(features, importance)
    columns = [(name, name in categorical) for name in features]
    if prediction:
        columns.append((prediction, prediction_categorical))
    done = _compare_columns(reference_view, current_view, columns, alpha, policy)
    results = [replace(done[name], weight=w[name]) for name in features if name in done]
    pred = done.get(prediction) if prediction else None
    present = sum(r.weight for r in results)
    share = sum(r.weight for r in results if r.severity == MAJOR) / present if present > 0 else 0.0
    levels = [r.severity for r in results] + ([pred.severity] if pred else [])
    if (results and share >= policy.share) or (pred is not None and pred.severity == MAJOR):
        verdict = MAJOR
    elif any(level != NONE for level in levels):
        verdict = MINOR
    else:
        verdict = NONE
    results.sort(key=lambda r: (-SEVERITY_LEVEL[r.severity], -r.weight * r.effect_size, r.column))
    return WindowDrift(verdict, share, results, pred, alpha, policy)


def compare_with_reference(reference: Any, current_view: Any, policy: DriftPolicy) -> WindowDrift:
    """`compare_window` for a monitor `Reference` (its profile, kinds, task and importance)."""
    return compare_window(reference.profile(), current_view, reference.features, reference.categorical,
                          prediction=dm_prediction(reference, current_view),
                          prediction_categorical=reference.task == "classification",
                          importance=reference.importance, policy=policy)


def dm_prediction(reference: Any, current_view: Any) -> str | None:
    """The prediction column when both profiles have it."""
    name = "prediction"
    if current_view.get_column(name) is None or reference.profile().get_column(name) is None:
        return None
    return name


__all__ = ["DriftPolicy", "WindowDrift", "compare_window", "compare_with_reference", "weights", "MAJOR", "MINOR", "NONE"]
