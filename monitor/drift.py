"""Drift between a window's whylogs profile and the reference profile, per column.

Numeric columns are compared through their KLL quantile sketches: the two-sample KS
statistic is the largest gap between the sketches' CDFs and its p-value comes from
scipy's Kolmogorov distribution (`kstwo`, what `ks_2samp` uses asymptotically); the effect
size is the Wasserstein distance between the sketches' quantile functions, normalised by
the reference spread. Categorical columns compare frequent-item counts: chi-square test
(`chi2_contingency`) and Jensen-Shannon distance. Like Evidently, small samples decide by
significance, large ones (both sides over `LARGE_SAMPLE` rows) by effect size, because at
large n a harmless shift is already "significant".
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

LARGE_SAMPLE = 1000
WASSERSTEIN_THRESHOLD = 0.1  # Evidently's default for normed Wasserstein
JENSEN_SHANNON_THRESHOLD = 0.1
_GRID = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class ColumnDrift:
    """The verdict for one column, with every number that went into it."""

    column: str
    kind: str  # "numeric" | "categorical"
    method: str  # the test that decided: "ks" | "wasserstein" | "chi2" | "jensenshannon"
    statistic: float  # KS D or chi-square statistic
    p_value: float
    effect_size: float  # normed Wasserstein or Jensen-Shannon distance
    drift: bool
    rows: int
    reference_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def _kll(view: Any, column: str) -> Any:
    col = view.get_column(column)
    dist = col.get_metric("distribution") if col is not None else None
    if dist is None or dist.kll.value.get_n() == 0:
        return None
    return dist.kll.value


def _finite_quantiles(sketch: Any) -> np.ndarray:
    q = np.asarray(sketch.get_quantiles(list(_GRID)), dtype=float)
    return q[np.isfinite(q)]


def numeric_drift(reference: Any, current: Any, column: str, alpha: float) -> ColumnDrift | None:
    """KS + normed Wasserstein between the column's sketches (None if either is empty)."""
    ref, cur = _kll(reference, column), _kll(current, column)
    if ref is None or cur is None:
        return None
    n, m = int(ref.get_n()), int(cur.get_n())
    q_ref, q_cur = _finite_quantiles(ref), _finite_quantiles(cur)
    if not len(q_ref) or not len(q_cur):
        return None
    points = np.unique(np.concatenate([q_ref, q_cur]))
    cdf_ref = np.asarray(ref.get_cdf(list(points), True)[:-1])
    cdf_cur = np.asarray(cur.get_cdf(list(points), True)[:-1])
    d = float(np.max(np.abs(cdf_ref - cdf_cur)))
    p = float(stats.kstwo.sf(d, max(1, round(n * m / (n + m)))))
    spread = float(np.std(q_ref))
    wd = float(stats.wasserstein_distance(q_ref, q_cur)) / (spread if spread > 0 else 1.0)
    large = min(n, m) > LARGE_SAMPLE
    drift = wd >= WASSERSTEIN_THRESHOLD if large else p < alpha
    return ColumnDrift(column, "numeric", "wasserstein" if large else "ks", d, p, wd, drift, m, n)


def _items(view: Any, column: str) -> dict[str, float]:
    col = view.get_column(column)
    metric = col.get_metric("frequent_items") if col is not None else None
    if metric is None:
        return {}
    return {item.value: float(item.est) for item in metric.to_summary_dict().get("frequent_strings", [])}


def categorical_drift(reference: Any, current: Any, column: str, alpha: float) -> ColumnDrift | None:
    """Chi-square + Jensen-Shannon between frequent-item counts (None if either is empty)."""
    ref, cur = _items(reference, column), _items(current, column)
    if not ref or not cur:
        return None
    keys = sorted(set(ref) | set(cur))
    table = np.array([[ref.get(k, 0.0) for k in keys], [cur.get(k, 0.0) for k in keys]])
    n, m = int(table[0].sum()), int(table[1].sum())
    js = float(jensenshannon(table[0] / n, table[1] / m, base=2))
    if len(keys) < 2:
        chi, p = 0.0, 1.0
    else:
        chi, p = (float(x) for x in stats.chi2_contingency(table, correction=False)[:2])
    large = min(n, m) > LARGE_SAMPLE
    drift = js >= JENSEN_SHANNON_THRESHOLD if large else p < alpha
    return ColumnDrift(column, "categorical", "jensenshannon" if large else "chi2", chi, p, js, drift, m, n)


def column_drift(reference: Any, current: Any, column: str, categorical: bool, alpha: float) -> ColumnDrift | None:
    """The right comparison for the column's kind."""
    fn = categorical_drift if categorical else numeric_drift
    return fn(reference, current, column, alpha)


def dataset_drift(results: list[ColumnDrift], share: float) -> tuple[bool, float]:
    """(verdict, share of drifted features): drift when the share reaches `share`."""
    if not results:
        return False, 0.0
    drifted = sum(r.drift for r in results) / len(results)
    return drifted >= share, drifted
