"""The two peer rules, re-implemented in a few lines on the raw rows (Evidently itself does not
import with pandas 3), and Vigil's rule through the monitor's own code."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial.distance import jensenshannon

from monitor.compare import DriftPolicy, compare_with_reference
from monitor.offline import current_view


def _is_categorical(ref: pd.Series) -> bool:
    return not pd.api.types.is_numeric_dtype(ref) or ref.nunique() <= 5  # Evidently's cut-off


def evidently_style(ref: pd.DataFrame, cur: pd.DataFrame, features: list[str]) -> bool:
    """Evidently's defaults: reference <= 1000 rows: KS / chi-square at p < 0.05; else normed
    Wasserstein / Jensen-Shannon >= 0.1; dataset drift when half the features drift."""
    small = len(ref) <= 1000
    drifted = 0
    for f in features:
        a, b = ref[f], cur[f]
        if _is_categorical(a):
            keys = sorted(set(a.astype(str)) | set(b.astype(str)))
            ca = a.astype(str).value_counts().reindex(keys, fill_value=0).to_numpy(float)
            cb = b.astype(str).value_counts().reindex(keys, fill_value=0).to_numpy(float)
            if small:
                drifted += len(keys) > 1 and stats.chisquare(cb, ca / ca.sum() * cb.sum()).pvalue < 0.05
            else:
                drifted += jensenshannon(ca / ca.sum(), cb / cb.sum()) >= 0.1
        elif small:
            drifted += stats.ks_2samp(a, b).pvalue < 0.05
        else:
            drifted += stats.wasserstein_distance(a, b) / (np.std(a) or 1.0) >= 0.1
    return drifted >= 0.5 * len(features)


def psi_rule(ref: pd.DataFrame, cur: pd.DataFrame, features: list[str], level: float = 0.25) -> bool:
    """PSI over ten reference-decile bins (categories for categorical features) > `level` on half the features."""
    drifted = 0
    for f in features:
        a, b = ref[f], cur[f]
        if _is_categorical(a):
            keys = sorted(set(a.astype(str)) | set(b.astype(str)))
            e = a.astype(str).value_counts(normalize=True).reindex(keys, fill_value=0).to_numpy(float)
            c = b.astype(str).value_counts(normalize=True).reindex(keys, fill_value=0).to_numpy(float)
        else:
            edges = np.unique(np.quantile(a, np.linspace(0.1, 0.9, 9)))
            e = np.bincount(np.searchsorted(edges, a, side="left"), minlength=len(edges) + 1) / len(a)
            c = np.bincount(np.searchsorted(edges, b, side="left"), minlength=len(edges) + 1) / len(b)
        e, c = np.clip(e, 1e-4, None), np.clip(c, 1e-4, None)
        drifted += float(np.sum((c - e) * np.log(c / e))) > level
    return drifted >= 0.5 * len(features)


def vigil(reference: Any, cur: pd.DataFrame, policy: DriftPolicy = DriftPolicy()) -> Any:
    """The monitor's verdict on one window: profile it as the serving side does, compare as the monitor does."""
    return compare_with_reference(reference, current_view(reference, cur), policy)
