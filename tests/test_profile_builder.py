"""vigil/profile_builder.py against `why.log` on the same rows.

The reference is what the serving path profiles today: `why.log(pd.DataFrame(columns))`
with float32 columns widened first (and categorical columns converted the way
monitor/reference.py converts them). A built profile must read the same counts, types,
mean/stddev, ints, cardinality and frequent items, exactly; its quantiles must be the same
up to 1024 values (KLL keeps them all) and within KLL's stated error beyond, against
numpy's exact ranks and against why.log's own sketch.
"""

from __future__ import annotations

import math
import threading

import numpy as np
import pandas as pd
import pytest

from vigil import profile_builder as pb
from vigil import profile_metrics as pm
from vigil.whylogs_compat import deserialize, merge, profile

GRID = [i / 100 for i in range(1, 100)]
KLL_K = pm.KllComponent.mtype(k=pm._KLL_K).get_k()
EPS = pm.KllComponent.mtype(k=KLL_K).normalized_rank_error(True)  # KLL's bound over all ranks


def original_widen(values: np.ndarray) -> np.ndarray:
    """widen_float32 as vigil/serving/profile_stream.py wrote it, verbatim."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        wide = values.astype(np.float64)
        exponent = np.floor(np.log10(np.abs(wide)))
        scale = np.where(np.isfinite(exponent), 10.0 ** (6 - exponent), 1.0)
        return np.where(np.isfinite(wide) & (wide != 0), np.round(wide * scale) / scale, wide)


def reference_frame(columns: dict[str, np.ndarray], categorical: tuple[str, ...] = ()) -> pd.DataFrame:
    frame = pd.DataFrame({k: original_widen(v) if v.dtype == np.float32 else v for k, v in columns.items()})
    for c in categorical:  # monitor/reference.py's conversion
        frame[c] = frame[c].astype(object).where(frame[c].notna(), None).map(lambda v: v if v is None else str(v))
    return frame


def why(columns: dict[str, np.ndarray], categorical: tuple[str, ...] = ()):
    return profile(reference_frame(columns, categorical))


def _norm(value):
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value.item() if isinstance(value, np.generic) else value


def facts(view, name: str) -> dict:
    """Everything but the quantiles, exactly as the monitor could read it."""
    col = view.get_column(name)
    assert col is not None, f"no column {name!r}"
    out = {"paths": sorted(col.get_metric_component_paths())}
    for key, value in col.to_summary_dict().items():
        if key.startswith("distribution/") and key.split("/")[1] not in ("mean", "stddev", "n", "min", "max"):
            continue  # quantiles: compared within KLL's error below
        if key == "frequent_items/frequent_strings":
            value = {item.value: (item.est, item.lower, item.upper) for item in value}
        out[key] = _norm(value)
    return out


def ranks_error(sketch, data: np.ndarray) -> float:
    """Largest distance between a grid rank and the true rank range of the sketch's quantile."""
    data = np.sort(data)
    values = np.asarray(sketch.get_quantiles(GRID))
    low = np.searchsorted(data, values, "left") / len(data)
    high = np.searchsorted(data, values, "right") / len(data)
    q = np.asarray(GRID)
    return float(np.max(np.maximum(0.0, np.maximum(low - q, q - high))))


def assert_quantiles(ours, theirs, name: str, data: np.ndarray | None) -> None:
    a = ours.get_column(name).get_metric("distribution")
    b = theirs.get_column(name).get_metric("distribution")
    assert (a is None) == (b is None)
    if a is None or b.kll.value.get_n() == 0:
        return
    ka, kb = a.kll.value, b.kll.value
    assert ka.get_k() == kb.get_k()
    assert ka.get_n() == kb.get_n()
    if ka.get_n() <= KLL_K:  # no compaction yet: every value is kept, the answers are identical
        assert ka.get_quantiles(GRID) == kb.get_quantiles(GRID)
        return
    assert data is not None
    assert ranks_error(ka, data) <= EPS, "built KLL beyond its error against the exact quantiles"
    assert ranks_error(kb, data) <= EPS, "why.log's KLL beyond its error against the exact quantiles"
    for q, value in zip(GRID, ka.get_quantiles(GRID)):  # and against why.log's sketch directly
        low, high = kb.get_rank(value, False), kb.get_rank(value, True)
        assert low - 2 * EPS <= q <= high + 2 * EPS, f"quantile {q}: {value} ranks {low}..{high} in why.log's KLL"


def assert_same(columns: dict[str, np.ndarray], categorical: tuple[str, ...] = (), built=None) -> None:
    ours = built if built is not None else pb.build_view(columns, categorical=set(categorical))
    theirs = why(columns, categorical)
    assert sorted(ours.get_columns()) == sorted(theirs.get_columns())
    frame = reference_frame(columns, categorical)
    for name in columns:
        assert facts(ours, name) == facts(theirs, name), name
        values = frame[name]
        data = values.to_numpy(dtype=float) if pd.api.types.is_numeric_dtype(values) else None  # bools: 0/1
        assert_quantiles(ours, theirs, name, data[~np.isnan(data)] if data is not None else None)


rng = np.random.default_rng(20240601)


def _floats(n: int) -> np.ndarray:
    x = rng.normal(3.0, 2.0, n)
    x[rng.random(n) < 0.05] = np.nan
    x[rng.random(n) < 0.01] = np.inf
    x[rng.random(n) < 0.01] = -np.inf
    return x


def _labels(n: int, with_none: bool = False) -> np.ndarray:
    pool = np.array(["setosa", "versicolor", "virginica", None] if with_none else ["setosa", "versicolor", "virginica"],
                    dtype=object)
    return pool[rng.integers(0, len(pool), n)]


def _heavy_tail(n: int) -> np.ndarray:
    """Three heavy hitters over a tail of ~3,000 distinct values: the sketch must purge."""
    return np.where(rng.random(n) < 0.5, rng.integers(0, 3, n), rng.integers(100, 3100, n))


CASES = {
    "float64": lambda: {"x": rng.normal(size=5000)},
    "float64 with NaN and ±inf": lambda: {"x": _floats(5000)},
    "float64 only NaN": lambda: {"x": np.full(50, np.nan)},
    "float32 widened": lambda: {"x": np.round(rng.uniform(0, 8, 5000), 1).astype(np.float32)},
    "float32 continuous": lambda: {"x": rng.normal(size=3000).astype(np.float32)},
    "float32 NaN/inf/0/subnormal": lambda: {"x": np.array([0.0, -0.0, np.nan, np.inf, -np.inf, 1e-45, 3.4e38, 5.1],
                                                          dtype=np.float32)},
    "int64": lambda: {"x": rng.integers(-20, 20, 5000)},
    "int32 many distinct": lambda: {"x": rng.integers(0, 100_000, 5000).astype(np.int32)},
    "uint8": lambda: {"x": rng.integers(0, 255, 700).astype(np.uint8)},
    "bool": lambda: {"x": rng.random(2500) < 0.3},
    "bool all True": lambda: {"x": np.ones(1001, dtype=bool)},
    "bool, many chunks of False": lambda: {"x": rng.permutation(np.arange(12352) < 7)},  # whylogs' chunked moments
    "strings": lambda: {"x": _labels(5000)},
    "numpy unicode strings": lambda: {"x": _labels(300).astype(str)},
    "strings with None": lambda: {"x": _labels(5000, with_none=True)},
    "strings with NaN": lambda: {"x": np.array(["a", np.nan, "b", None, "a"], dtype=object)},
    "strings longer than 128": lambda: {"x": np.array(["x" * 200 + "a", "x" * 200 + "b", "short"], dtype=object)},
    "strings, more distinct than the sketch holds exactly": lambda: {"x": _heavy_tail(6000).astype(str).astype(object)},
    "ints, more distinct than the sketch holds exactly": lambda: {"x": _heavy_tail(6000)},
    "ints, distinct between the HLL and frequent-items limits": lambda: {"x": rng.integers(0, 600, 5000)},
    "all None": lambda: {"x": np.array([None] * 7, dtype=object)},
    "mixed objects (why.log's own path)": lambda: {"x": np.array([1, "a", 2.5, None, True], dtype=object)},
    "single row": lambda: {"f": np.array([1.5]), "f32": np.array([5.1], dtype=np.float32), "i": np.array([3]),
                           "b": np.array([True]), "s": np.array(["a"], dtype=object)},
    "empty": lambda: {"f": np.zeros(0), "i": np.zeros(0, dtype=np.int64), "s": np.zeros(0, dtype=object)},
    "iris serving shape": lambda: {
        **{f"f{i}": np.round(rng.uniform(0, 8, 4096), 1).astype(np.float32) for i in range(8)},
        "prediction": _labels(4096), **{f"proba_{c}": rng.random(4096) for c in ("a", "b", "c")}},
}


@pytest.mark.parametrize("case", list(CASES))
def test_reads_the_same_as_why_log(case):
    assert_same(CASES[case]())


@pytest.mark.parametrize("categorical", [
    lambda: rng.integers(0, 4, 900),
    lambda: rng.random(900) < 0.5,
    lambda: np.where(rng.random(900) < 0.1, np.nan, np.round(rng.uniform(0, 3, 900))),
    lambda: np.array([1, "a", None, 2.5], dtype=object),
])
def test_categorical_columns_read_as_the_reference_converts_them(categorical):
    columns = {"c": categorical()}
    assert_same(columns, categorical=("c",))
    assert pb.build_view(columns, categorical={"c"}).get_column("c").get_metric("frequent_items") is not None


@pytest.mark.parametrize("distinct", [pm._HLL_ORDER_FREE, pm._HLL_ORDER_FREE + 1, 2000])
def test_cardinality_is_exact_on_both_sides_of_the_order_free_limit(distinct):
    values = rng.permutation(np.repeat(rng.normal(size=distinct), 5))
    built = pb.build_view({"x": values}).get_column("x").get_metric("cardinality")
    logged = why({"x": values}).get_column("x").get_metric("cardinality")
    assert built.estimate == logged.estimate
    assert abs(built.estimate - distinct) <= 0.05 * distinct


def test_the_order_free_limit_is_where_hll_leaves_its_exact_modes():
    """Below the limit any order gives the same estimate; just above, HLL mode starts."""
    values = rng.normal(size=pm._HLL_ORDER_FREE)
    sketches = [pm.HllComponent.mtype(pm._CFG.hll_lg_k) for _ in range(2)]
    sketches[0].update_np(values)
    sketches[1].update_np(np.sort(values)[::-1])
    assert sketches[0].get_estimate() == sketches[1].get_estimate()
    assert "Mode   : SET" in sketches[0].to_string() or "Mode   : LIST" in sketches[0].to_string()
    sketches[0].update_np(rng.normal(size=1))
    assert "Mode   : HLL" in sketches[0].to_string()


@pytest.mark.parametrize("kind", ["normal", "iris", "sorted", "heavy ties"])
def test_quantiles_beyond_k_within_kll_error(kind):
    n = 32768
    x = {"normal": lambda: rng.normal(size=n), "iris": lambda: np.round(rng.uniform(0, 8, n), 1),
         "sorted": lambda: np.sort(rng.exponential(size=n)), "heavy ties": lambda: rng.integers(0, 3, n) * 1.0}[kind]()
    ours, theirs = pb.build_view({"x": x}), why({"x": x})
    assert_quantiles(ours, theirs, "x", x)
    exact = np.quantile(x, [0.25, 0.5, 0.75])
    got = ours.get_column("x").get_metric("distribution").kll.value.get_quantiles([0.25, 0.5, 0.75])
    spread = np.quantile(x, 0.75 + EPS) - np.quantile(x, 0.25 - EPS) + 1e-12
    assert np.all(np.abs(np.asarray(got) - exact) <= spread)  # and in value terms, inside the IQR-scale band


def test_widen_float32_is_the_original_bit_for_bit():
    bits = rng.integers(0, 2**32, 2_000_000, dtype=np.uint64).astype(np.uint32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1.1754944e-38, 3.4028235e38, 5.1, 0.2,
                         9.9999995, 10.0, 1e-7, 999999.94, 1e7], dtype=np.float32)
    for x in (bits.view(np.float32), specials, np.float32(10.0) ** np.arange(-45, 39, dtype=np.float32)):
        a, b = original_widen(x), pb.widen_float32(x)
        assert a.dtype == b.dtype == np.float64
        assert np.array_equal(a.view(np.uint64), b.view(np.uint64)) or np.array_equal(a, b, equal_nan=True)
    assert pb.widen_float32(np.array([5.1, 0.2], dtype=np.float32)).tolist() == [5.1, 0.2]


def test_serializes_and_deserializes():
    columns = CASES["iris serving shape"]()
    columns["s"] = _labels(4096, with_none=True)
    built = pb.build_view(columns, dataset_timestamp=1_700_000_000.25)
    blob = built.serialize()
    back = deserialize(blob)
    assert back.dataset_timestamp.timestamp() == pytest.approx(1_700_000_000.25, abs=1e-3)
    for name in columns:
        assert facts(back, name) == facts(built, name)
        assert_quantiles(back, built, name, None if name in ("prediction", "s") else original_widen(columns[name]))
    assert deserialize(back.serialize()).get_column("f0").to_summary_dict()["counts/n"] == 4096


def test_merges_with_a_why_log_profile_and_with_itself():
    first = {"x": _floats(3000), "s": _labels(3000, with_none=True), "i": rng.integers(0, 9, 3000)}
    second = {"x": _floats(2000) + 1.0, "s": _labels(2000), "i": rng.integers(5, 15, 2000)}
    both = {k: np.concatenate([first[k], second[k]]) for k in first}
    merged = merge(pb.build_view(first), deserialize(why(second).serialize()))
    whole = why(both)
    for name in first:
        got, want = facts(merged, name), facts(whole, name)
        for key in want:
            if key in ("distribution/mean", "distribution/stddev") and want[key] != "nan":
                assert got[key] == pytest.approx(want[key], rel=1e-12), (name, key)
            elif key.startswith("cardinality/"):
                assert got[key] == pytest.approx(want[key], rel=0.02), (name, key)  # union: HLL's estimator
            else:
                assert got[key] == want[key], (name, key)
    finite = both["x"][~np.isnan(both["x"])]
    assert_quantiles(merged, whole, "x", finite)
    doubled = merge(pb.build_view(first), pb.build_view(first))
    assert facts(doubled, "s")["counts/n"] == 6000
    assert facts(doubled, "s")["frequent_items/frequent_strings"] == {
        k: (2 * v[0], 2 * v[1], 2 * v[2]) for k, v in facts(why(first), "s")["frequent_items/frequent_strings"].items()}
    kll = doubled.get_column("x").get_metric("distribution").kll.value
    assert ranks_error(kll, np.concatenate([first["x"], first["x"]])[~np.isnan(np.concatenate([first["x"]] * 2))]) <= EPS


def test_the_accumulator_reads_as_one_batch_of_every_row():
    rows = 1000  # <= k: the KLL keeps every value, so even the quantiles must be identical
    features = np.round(rng.uniform(0, 8, (rows, 4)), 1).astype(np.float32)
    labels, scores = _labels(rows), rng.dirichlet(np.ones(3), rows)
    names, proba = ("a", "b", "c", "d"), ("p0", "p1", "p2")
    acc = pb.ProfileAccumulator()
    start = 0
    for size in [1, 1, 7, 16, 300] + [1] * 5:
        stop = start + size
        acc.append({names: features[start:stop], "prediction": labels[start:stop], proba: scores[start:stop]})
        start = stop
    while start < rows:
        stop = min(rows, start + 64)
        assert acc.append({names: features[start:stop], "prediction": labels[start:stop],
                           proba: scores[start:stop]}) == stop - start
        start = stop
    assert acc.rows == rows
    built = acc.build(dataset_timestamp=123.0)
    assert acc.rows == 0 and acc.build() is None
    columns = {n: features[:, i] for i, n in enumerate(names)} | {"prediction": labels}
    columns |= {n: scores[:, i] for i, n in enumerate(proba)}
    assert_same(columns, built=built)
    assert built.dataset_timestamp.timestamp() == 123.0


def test_the_accumulator_keeps_columns_and_dtypes_apart():
    acc = pb.ProfileAccumulator()
    acc.append({"x": np.array([5.1, 0.2], dtype=np.float32), "s": np.array(["a", "b"], dtype=object)})
    acc.append({"x": np.array([1.5, np.nan])})  # float64, and no "s" in this batch
    acc.append({"x": np.array([2.5], dtype=np.float32), "s": np.array(["a"])})  # numpy unicode
    view = acc.build()
    x = facts(view, "x")
    assert (x["counts/n"], x["counts/null"], x["types/fractional"]) == (5, 1, 4)
    assert sorted(view.get_column("x").get_metric("distribution").kll.value.get_quantiles([0, 1])) == [0.2, 5.1]
    s = facts(view, "s")
    assert (s["counts/n"], s["frequent_items/frequent_strings"]["a"][0]) == (3, 2)


@pytest.mark.parametrize("batch", [
    {"x": np.ones(3), "y": np.ones(2)},
    {"x": [1.0, 2.0]},
    {"x": np.ones((2, 2))},
    {("a", "b"): np.ones((2, 3))},
    {("a", "b"): np.ones(2)},
    {"x": np.float64(1.0)},
])
def test_the_accumulator_refuses_a_malformed_batch(batch):
    acc = pb.ProfileAccumulator()
    with pytest.raises(ValueError):
        acc.append(batch)
    assert acc.rows == 0 and acc.build() is None


def test_build_view_refuses_columns_of_different_lengths():
    with pytest.raises(ValueError, match="different lengths"):
        pb.build_view({"x": np.ones(3), "y": np.ones(4)})


def test_appending_while_building_counts_every_row_once():
    acc = pb.ProfileAccumulator()
    total, done, built = 20_000, threading.Event(), threading.Event()

    def produce():
        for i in range(0, total, 4):
            acc.append({"x": np.arange(i, i + 4, dtype=np.float64)})
            if i == total // 2:  # halfway, let a build happen (a busy machine may not switch threads)
                built.wait(timeout=30)
        done.set()

    views = []
    thread = threading.Thread(target=produce)
    thread.start()
    while not done.is_set():
        view = acc.build()
        if view is not None:
            views.append(view)
            built.set()
    thread.join()
    last = acc.build()
    views += [last] if last is not None else []
    merged = views[0]
    for view in views[1:]:
        merged = merge(merged, view)
    counts = facts(merged, "x")
    assert counts["counts/n"] == total
    assert counts["distribution/n"] == total and counts["distribution/min"] == 0 and counts["distribution/max"] == total - 1
    assert len(views) > 1  # the builds really interleaved with the appends


@pytest.mark.parametrize("shift", [0.0, 0.8])
def test_the_monitor_reads_the_same_drift_from_either_profile(shift):
    from monitor.drift import column_drift

    reference = {"x": np.round(rng.normal(5, 1, 3000), 1), "s": _labels(3000)}
    rows = 2000
    current = {"x": (np.round(rng.normal(5 + shift, 1, rows), 1)).astype(np.float32),
               "s": np.where(rng.random(rows) < shift / 2, "setosa", _labels(rows)).astype(object)}
    ref = why(reference)
    for name, categorical in (("x", False), ("s", True)):
        ours = column_drift(ref, pb.build_view(current), name, categorical, 0.05)
        theirs = column_drift(ref, why(current), name, categorical, 0.05)
        # the same verdict and severity from both; a shift is at least minor drift (how
        # severe a 0.4 share moved to one category reads depends on the random rows)
        assert (ours.drift, ours.severity) == (theirs.drift, theirs.severity), name
        assert (ours.severity != "none") == (shift > 0), (name, ours)
        assert (ours.rows, ours.reference_rows) == (theirs.rows, theirs.reference_rows) == (rows, 3000)
        if categorical:  # frequent items are exact: the very same numbers
            assert (ours.statistic, ours.p_value, ours.effect_size) == (theirs.statistic, theirs.p_value, theirs.effect_size)
        else:  # KS D from two KLLs of the same rows: within the sketches' error
            assert ours.statistic == pytest.approx(theirs.statistic, abs=4 * EPS)


def test_whylogs_imported_without_its_unused_sklearn_extras_profiles_the_same(tmp_path) -> None:
    """A fresh one-thread process skips sklearn in whylogs' import, profiles the same, and can still import sklearn."""
    import subprocess
    import sys

    script = tmp_path / "fresh.py"
    script.write_text(
        "import sys\n"
        "import numpy as np, pandas as pd\n"
        "from vigil.whylogs_compat import profile\n"
        "rng = np.random.default_rng(3)\n"
        "frame = pd.DataFrame({'x': rng.normal(size=300), 'k': rng.choice(['a', 'b', 'c'], 300)})\n"
        "blob = profile(frame).serialize()\n"
        "assert 'sklearn' not in sys.modules, 'whylogs pulled sklearn in'\n"
        "import sklearn.cluster, sklearn.metrics.pairwise  # still importable after\n"
        "sys.stdout.buffer.write(blob)\n")
    fresh = subprocess.run([sys.executable, str(script)], capture_output=True, timeout=120)
    assert fresh.returncode == 0, fresh.stderr.decode()[-2000:]
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x": rng.normal(size=300), "k": rng.choice(["a", "b", "c"], 300)})
    import sklearn  # noqa: F401  (here whylogs imports its extras: the reference)

    here, there = profile(frame).to_pandas(), deserialize(fresh.stdout).to_pandas()
    assert list(there.index) == ["k", "x"] and there.shape == here.shape
    pd.testing.assert_frame_equal(there.sort_index(axis=1), here.sort_index(axis=1))


def test_components_read_back_through_reused_classes_read_and_merge_as_whylogs_own(monkeypatch) -> None:
    import copy

    from whylogs.core.metrics.metric_components import MetricComponent

    from vigil import whylogs_compat

    columns = CASES["iris serving shape"]()
    columns["s"] = _labels(4096, with_none=True)
    blob = pb.build_view(columns, dataset_timestamp=1_700_000_000.0).serialize()
    ours = merge(deserialize(blob), deserialize(blob))
    classes = len(whylogs_compat._component_classes)
    again = merge(ours, deserialize(blob))
    assert len(whylogs_compat._component_classes) == classes  # no class made per read
    component = again.get_column("f0").get_metric("distribution").kll
    assert copy.deepcopy(component).value.get_n() == component.value.get_n() == 3 * 4096
    monkeypatch.setattr(MetricComponent, "from_protobuf", whylogs_compat.whylogs_from_protobuf)
    theirs = merge(deserialize(blob), deserialize(blob))
    assert type(theirs.get_column("f0").get_metric("counts").n) is not type(
        deserialize(blob).get_column("f0").get_metric("counts").n)  # whylogs' own: a class per read
    pd.testing.assert_frame_equal(deserialize(blob).to_pandas(), whylogs_compat.deserialize(blob).to_pandas())
    for name in columns:  # a KLL merge flips coins: quantiles within KLL's error, the rest exactly
        assert facts(ours, name) == facts(theirs, name), name
        if name not in ("prediction", "s"):
            values = original_widen(columns[name]) if columns[name].dtype == np.float32 else columns[name]
            assert_quantiles(ours, theirs, name, np.concatenate([values, values]))


def test_profiles_serialize_in_memory_to_the_same_bytes_as_through_a_temporary_file(monkeypatch) -> None:
    import tempfile

    from whylogs.core.view import dataset_profile_view

    from vigil import whylogs_compat

    columns = CASES["iris serving shape"]()
    view = pb.build_view(columns, dataset_timestamp=1_700_000_000.0)
    assert dataset_profile_view.tempfile is whylogs_compat._InMemory  # applied by importing through the shim
    ours = view.serialize()
    monkeypatch.setattr(dataset_profile_view, "tempfile", tempfile)  # whylogs' own: a file on disk
    assert view.serialize() == ours
    assert deserialize(ours).get_column("f0").to_summary_dict()["counts/n"] == len(columns["f0"])
