"""The drift numbers against independent computations on the raw rows (scipy, numpy, pandas).

Tolerances, stated once: the sketches are KLL with k=1024 (normalised rank error ~0.3 %
at 99 % confidence) and exact frequent items, so
  - KS D within 0.01 of `scipy.stats.ks_2samp`'s, its p-value within a factor 2
    (|log10 ratio| <= 0.3) wherever scipy's p >= 1e-4, and the same decision at 0.001;
  - Wasserstein within 5 % (relative) of `scipy.stats.wasserstein_distance`, or 0.4 % of the
    reference's standard deviation where the distance itself is that small (a rank error of
    ~0.3 % moves a bulk quantile by ~0.3 % of sigma, so near zero the error is absolute: the
    gamma case with W ~ 0.035 measured up to 0.0016 sigma over 40 sketchings); 10 % for the
    coarser normed `distance` the verdict reports;
  - chi-square, p and Jensen-Shannon equal to scipy's on the same counts (1e-9);
  - PSI within 0.01 + 5 % of a direct numpy computation (deciles of the raw reference);
  - data-quality counts equal to pandas', shares within 0.01.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from monitor import drift as dm
from monitor.data_quality import data_quality
from monitor.quality import ConceptDrift
from monitor.reference import build_reference
from vigil import profile_builder as pb

CASES = [(5000, 500, 0.0, 1), (5000, 2000, 0.15, 2), (3000, 300, 0.5, 3), (800, 120, 0.0, 4),
         (20000, 20000, 0.05, 5), (4000, 1000, 0.3, 6), (2000, 2000, 0.07, 7), (1500, 1000, 0.1, 8)]


def _sketches(a: np.ndarray, b: np.ndarray):
    return dm.kll(pb.build_view({"x": a}), "x"), dm.kll(pb.build_view({"x": b}), "x")


@pytest.mark.parametrize("n,m,shift,seed", CASES)
def test_sketch_ks_matches_scipy_ks_2samp(n, m, shift, seed) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(shift, 1, size=m)
    d, p = dm.ks_from_sketches(*_sketches(a, b))
    ref = stats.ks_2samp(a, b)
    assert d == pytest.approx(ref.statistic, abs=0.01)
    if ref.pvalue >= 1e-4:
        assert abs(np.log10(p) - np.log10(ref.pvalue)) <= 0.3, (p, ref.pvalue)
    if not 0.0005 < ref.pvalue < 0.002:  # away from the threshold, the decision is the same
        assert (p < 0.001) == (ref.pvalue < 0.001)


@pytest.mark.parametrize("n,m,shift,seed", CASES)
@pytest.mark.parametrize("family", ["normal", "gamma"])
def test_sketch_wasserstein_matches_scipy(n, m, shift, seed, family) -> None:
    rng = np.random.default_rng(seed)
    if family == "normal":
        a, b = rng.normal(size=n), rng.normal(shift, 1.1, size=m)
    else:  # skewed: the right tail matters
        a, b = rng.gamma(2.0, size=n), rng.gamma(2.0, size=m) + shift
    ref_sketch, cur_sketch = _sketches(a, b)
    expected = stats.wasserstein_distance(a, b)
    # KLL compaction is randomised, so each run's sketch differs: the bound covers the spread of many sketchings
    assert dm.wasserstein_from_sketches(ref_sketch, cur_sketch) == pytest.approx(
        expected, rel=0.05, abs=0.004 * np.std(a))
    if family != "normal":
        return
    # the verdict's own normed distance (coarser grid, normed by the spread of the reference quantiles)
    reported = dm.numeric_stats(ref_sketch, cur_sketch).wasserstein * np.std(a)
    assert reported == pytest.approx(expected, rel=0.1)


def _direct_psi(a: np.ndarray, b: np.ndarray) -> float:
    edges = np.unique(np.quantile(a, np.linspace(0.1, 0.9, 9)))
    share = lambda x: np.bincount(np.searchsorted(edges, x, side="left"), minlength=len(edges) + 1) / len(x)  # noqa: E731
    e, c = np.clip(share(a), 1e-4, None), np.clip(share(b), 1e-4, None)
    return float(np.sum((c - e) * np.log(c / e)))


@pytest.mark.parametrize("n,m,shift,seed", CASES)
def test_sketch_psi_matches_a_direct_computation(n, m, shift, seed) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(shift, 1.2, size=m)
    direct = _direct_psi(a, b)
    assert dm.psi_from_sketches(*_sketches(a, b)) == pytest.approx(direct, abs=0.01 + 0.05 * direct)


def test_psi_on_discrete_values_merges_tied_deciles() -> None:
    rng = np.random.default_rng(8)
    a, b = rng.integers(0, 4, 3000).astype(float), rng.choice(4, 600, p=[0.1, 0.2, 0.3, 0.4]).astype(float)
    direct = _direct_psi(a, b)
    assert direct > 0.1 and dm.psi_from_sketches(*_sketches(a, b)) == pytest.approx(direct, abs=0.01)


def test_categorical_tests_match_scipy_on_the_same_counts() -> None:
    rng = np.random.default_rng(9)
    ref = pd.Series(rng.choice(list("abcde"), 3000, p=[0.4, 0.3, 0.15, 0.1, 0.05]))
    cur = pd.Series(rng.choice(list("abcdef"), 400, p=[0.15, 0.3, 0.2, 0.15, 0.1, 0.1]))
    view = lambda s: pb.build_view({"c": s.to_numpy(dtype=object)})  # noqa: E731
    result = dm.categorical_drift(view(ref), view(cur), "c", 0.001)
    keys = sorted(set(ref) | set(cur))
    table = np.array([[int((ref == k).sum()) for k in keys], [int((cur == k).sum()) for k in keys]])
    chi, p = stats.chi2_contingency(table, correction=False)[:2]
    shares = table / table.sum(axis=1, keepdims=True)
    assert result.statistic == pytest.approx(chi, rel=1e-9) and result.p_value == pytest.approx(p, rel=1e-9)
    assert result.distance == pytest.approx(jensenshannon(shares[0], shares[1], base=2), rel=1e-9)
    clipped = np.clip(shares, 1e-4, None)
    assert result.effect_size == pytest.approx(float(np.sum((clipped[1] - clipped[0]) * np.log(clipped[1] / clipped[0]))),
                                               rel=1e-9)
    assert result.severity == "major"  # a new category and a 25-point move: significant and PSI > 0.25


def test_data_quality_counts_match_pandas() -> None:
    rng = np.random.default_rng(10)
    ref = pd.DataFrame({"x": rng.normal(size=1000), "c": rng.choice(["a", "b"], 1000), "target": 0})
    ref["prediction"] = "0"
    cur = pd.DataFrame({"x": rng.normal(0.5, 2, size=700), "c": rng.choice(["a", "b", "zz", "new"], 700)})
    cur.loc[rng.choice(700, 25, replace=False), "x"] = np.nan
    cur.loc[rng.choice(700, 7, replace=False), "x"] = np.inf
    cur.loc[rng.choice(700, 3, replace=False), "x"] = -np.inf
    cur.loc[rng.choice(700, 11, replace=False), "c"] = None
    reference = build_reference("m", "1", ref, "classification", "target")
    view = pb.build_view({"x": cur["x"].to_numpy(), "c": cur["c"].to_numpy(dtype=object)})
    dq = data_quality(view, reference)["columns"]
    x, c = cur["x"], cur["c"]
    assert dq["x"]["rows"] == len(cur) and dq["x"]["nan"] == int(x.isna().sum()) == 25
    assert dq["x"]["inf"] == int(np.isinf(x).sum()) == 10
    finite = x[np.isfinite(x)]
    outside = ((finite < ref.x.min()) | (finite > ref.x.max())).sum()
    assert outside > 0 and dq["x"]["out_of_range_share"] == pytest.approx(outside / len(finite), abs=0.01)
    assert dq["c"]["missing"] == int(c.isna().sum()) == 11
    unseen = c.notna() & ~c.isin(["a", "b"])
    assert dq["c"]["unseen"] == ["new", "zz"]
    assert dq["c"]["unseen_share"] == pytest.approx(unseen.sum() / len(cur), abs=1e-9)


@pytest.mark.parametrize("seed", range(5))
def test_adwin_finds_an_error_rate_step_within_200_rows_and_not_before(seed) -> None:
    rng = np.random.default_rng(seed)
    step = 2000
    errors = np.concatenate([rng.random(step) < 0.05, rng.random(1000) < 0.4]).astype(float)
    detector = ConceptDrift()
    fired = [i for i, e in enumerate(errors) if detector.update(e)]
    assert fired and fired[0] >= step, fired  # nothing on the stable part
    assert fired[0] - step <= 200, fired


def test_a_large_psi_on_a_few_rows_is_noise_not_drift() -> None:
    rng = np.random.default_rng(12)
    ref, few = rng.normal(size=3000), rng.normal(size=25)  # 25 rows of the same distribution
    result = dm.numeric_drift(*[pb.build_view({"x": v}) for v in (ref, few)], "x", 0.001)
    assert result.effect_size > 0.1 and result.p_value > 0.001  # PSI alone would call it drift
    assert result.severity == "none"


def test_windows_from_the_reference_alarm_at_most_at_alpha_over_all_columns() -> None:
    from monitor.compare import DriftPolicy, compare_window

    rng = np.random.default_rng(13)
    names = [f"x{i}" for i in range(30)]
    ref_view = pb.build_view({n: rng.normal(size=4000) for n in names})
    policy = DriftPolicy(alpha=0.05)  # a rate large enough to count in 200 windows
    significant = 0
    for _ in range(200):
        v = compare_window(ref_view, pb.build_view({n: rng.normal(size=300) for n in names}), names, policy=policy)
        assert v.alpha_per_test == pytest.approx(0.05 / 30)
        significant += any(f.p_value < v.alpha_per_test for f in v.features)
    # Bonferroni: P(any of 30 significant) <= 0.05, so ~10 of 200 at most (without it: ~157)
    assert significant <= 25, significant
