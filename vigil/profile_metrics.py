"""whylogs metrics built straight from numpy arrays, one builder per kind of column.

The metric objects are whylogs' own (same classes, config and wire form) with their
components filled by one vectorized update each; vigil/profile_builder.py assembles them
into column and dataset views. Why each shortcut leaves the sketch as whylogs would is
said where it is taken.
"""

from __future__ import annotations

import sys
from collections import Counter
from typing import Any, Callable

import numpy as np

from vigil.whylogs_compat import profile, whylogs

whylogs()  # the numpy 2 shim must run before any whylogs module is imported

from whylogs.core.metrics.column_metrics import ColumnCountsMetric, TypeCountersMetric  # noqa: E402
from whylogs.core.metrics.maths import VarianceM2Result, parallel_variance_m2, welford_online_variance_m2  # noqa: E402
from whylogs.core.metrics.metric_components import (FractionalComponent, FrequentStringsComponent,  # noqa: E402
                                                    HllComponent, IntegralComponent, KllComponent,
                                                    MaxIntegralComponent, MinIntegralComponent)
from whylogs.core.metrics.metrics import (CardinalityMetric, DistributionMetric, FrequentItemsMetric,  # noqa: E402
                                          IntsMetric, MetricConfig)
from whylogs.core.view import ColumnProfileView  # noqa: E402

Metrics = dict[str, Any]  # a column's whylogs metrics by namespace
_CFG = MetricConfig()
# Frequent items stay exact while at most 3/4 of the sketch's largest map (768 items) are
# live: up to there one weighted update per distinct item leaves it as per-value updates do
# (measured: per value `update_np` ~36 ns, `update_str_list` ~35 ns). HLL's estimate ignores
# order in its list/set modes, up to 3/4 * 2^(lg_k-3) = 384 distinct values (tested); in HLL
# mode (HIP) it depends on the order of first occurrences. So few distinct values are fed
# once (~1 ns/value instead of ~15), more are fed as the column comes.
_FI_EXACT = 3 * (1 << _CFG.fi_lg_max_k) // 4
_HLL_ORDER_FREE = 3 * (1 << (_CFG.hll_lg_k - 3)) // 4
_BOOL_CHUNK = 1000  # whylogs feeds bools as lists of this many 1s/0s (metrics.py)

# -- metrics, each built the way whylogs' columnar_update would leave it ------------------
_PROTOTYPES: dict[type, dict[str, Any]] = {}
_KLL_K = _CFG.kll_k_large if _CFG.large_kll_k else _CFG.kll_k  # as DistributionMetric.zero() reads it


def _c(cls: type, value: Any) -> Any:
    """A metric component holding `value`, without `MetricComponent.__init__`, which looks up
    its (de)serializer and aggregator in three registries per call (measured ~3 µs, ~17 per
    column); they depend only on the class, so they are looked up once and copied (~0.15 µs)."""
    proto = _PROTOTYPES.get(cls)
    if proto is None:
        proto = _PROTOTYPES[cls] = dict(cls(None).__dict__)
    component = cls.__new__(cls)
    attributes = proto.copy()
    attributes["_value"] = value
    component.__dict__ = attributes
    return component


def _counts(n: int, null: int = 0, nan: int = 0, inf: int = 0, true: int = 0) -> ColumnCountsMetric:
    c = IntegralComponent
    return ColumnCountsMetric(n=_c(c, n), null=_c(c, null), nan=_c(c, nan), inf=_c(c, inf), true=_c(c, true))


def _types(integral: int = 0, fractional: int = 0, boolean: int = 0, string: int = 0) -> TypeCountersMetric:
    c = IntegralComponent
    return TypeCountersMetric(integral=_c(c, integral), fractional=_c(c, fractional), boolean=_c(c, boolean),
                              string=_c(c, string), object=_c(c, 0), tensor=_c(c, 0))


def _moments(values: np.ndarray) -> VarianceM2Result:
    """Mean and m2 by whylogs' own formulas on the same array (so bit-identical)."""
    result = VarianceM2Result(n=0, mean=0.0, m2=0.0)
    n = len(values)
    if n > 1:
        second = VarianceM2Result(n=n, mean=values.mean(), m2=values.var(ddof=1) * (n - 1))
        result = parallel_variance_m2(first=result, second=second)
    elif n == 1:
        result = welford_online_variance_m2(existing=result, new_value=values[0])
    return result


def _distribution(moments: VarianceM2Result, kll_values: np.ndarray | None = None) -> DistributionMetric:
    sketch = KllComponent.mtype(k=_KLL_K)
    if kll_values is not None and len(kll_values):
        sketch.update(kll_values)
    return DistributionMetric(kll=_c(KllComponent, sketch), mean=_c(FractionalComponent, moments.mean),
                              m2=_c(FractionalComponent, moments.m2))


def _hll(values: np.ndarray | list[str] | None = None, distinct: np.ndarray | None = None) -> CardinalityMetric:
    """HLL of `values` in order; `distinct` (any order) is fed instead while that is exact."""
    sketch = HllComponent.mtype(_CFG.hll_lg_k)
    if distinct is not None and len(distinct) <= _HLL_ORDER_FREE:
        sketch.update_np(distinct)
    elif isinstance(values, list):
        sketch.update_str_list(values)
    elif values is not None and len(values):
        sketch.update_np(values)
    return CardinalityMetric(hll=_c(HllComponent, sketch))


def _items() -> FrequentItemsMetric:
    sketch = FrequentStringsComponent.mtype(_CFG.fi_lg_max_k)
    return FrequentItemsMetric(frequent_strings=_c(FrequentStringsComponent, sketch),
                               max_frequent_item_size=_CFG.max_frequent_item_size)


def _no_ints() -> IntsMetric:
    """`IntsMetric.zero()`: its sentinels until an int is seen."""
    return IntsMetric(max=_c(MaxIntegralComponent, -sys.maxsize), min=_c(MinIntegralComponent, sys.maxsize))


def _distinct(ordered: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Distinct values of a sorted array with their counts, or None when there are more than `limit`."""
    if not len(ordered):
        return ordered, np.zeros(0, dtype=np.int64)
    change = ordered[1:] != ordered[:-1]
    if np.count_nonzero(change) >= limit:
        return None
    starts = np.flatnonzero(np.concatenate(([True], change)))
    return ordered[starts], np.diff(np.append(starts, len(ordered)))


def float_metrics(x: np.ndarray) -> Metrics:
    nan = np.isnan(x)
    n_nan = int(np.count_nonzero(nan))
    values = x[~nan] if n_nan else x  # whylogs drops NaN (null) and keeps ±inf everywhere
    ordered, few = values, None  # few values: HLL order-free, KLL keeps them all: no sort
    if len(values) > _HLL_ORDER_FREE:
        ordered = np.sort(values)
        few = _distinct(ordered, _HLL_ORDER_FREE)
    return {
        "counts": _counts(len(x), null=n_nan, nan=n_nan, inf=int(np.count_nonzero(np.isinf(values)))),
        "types": _types(fractional=len(values)),
        "cardinality": _hll(values, few[0] if few else None),
        "distribution": _distribution(_moments(values), ordered),
    }


def int_metrics(x: np.ndarray) -> Metrics:
    values = x.astype(np.int64, copy=False)  # whylogs: `.astype(int)`
    ordered, few = values, None  # up to _FI_EXACT values, per-value updates in order are exact anyway
    if len(values) > _FI_EXACT:
        ordered = np.sort(values)
        few = _distinct(ordered, _FI_EXACT)
    items = _items()
    if few is None:
        items.frequent_strings.value.update_np(values)
    for value, count in zip(*(few or ((), ()))):
        items.frequent_strings.value.update(str(value), int(count))  # C++ to_string(int64) == str(int)
    ints = _no_ints() if not len(values) else IntsMetric(max=_c(MaxIntegralComponent, int(values.max())),
                                                           min=_c(MinIntegralComponent, int(values.min())))
    return {
        "counts": _counts(len(values)),
        "types": _types(integral=len(values)),
        "distribution": _distribution(_moments(values), ordered.astype(np.float64)),
        "ints": ints,
        "cardinality": _hll(values, few[0] if few else None),
        "frequent_items": items,
    }


def bool_metrics(x: np.ndarray) -> Metrics:
    n, true = len(x), int(np.count_nonzero(x))
    false = n - true
    moments = VarianceM2Result(n=0, mean=0.0, m2=0.0)  # whylogs: chunks of 1000 ones, then of zeros
    for value, count in ((1.0, true), (0.0, false)):
        while count > 0:
            size = min(count, _BOOL_CHUNK)
            if size > 1:
                moments = parallel_variance_m2(first=moments, second=VarianceM2Result(n=size, mean=value, m2=0.0))
            else:
                moments = welford_online_variance_m2(existing=moments, new_value=value)
            count -= size
    cardinality = _hll()
    if true and false:
        cardinality.hll.value.update_int_list([1, 0])
    elif n:
        cardinality.hll.value.update(1 if true else 0)
    items = _items()
    for label, count in (("True", true), ("False", false)):
        if count:
            items.frequent_strings.value.update(label, count)
    return {
        "counts": _counts(n, true=true),
        "types": _types(boolean=n),
        "distribution": _distribution(moments, np.repeat([0.0, 1.0], [false, true])),
        "ints": _no_ints(),  # whylogs never feeds bools to `ints`
        "cardinality": cardinality,
        "frequent_items": items,
    }


def _string_metrics(n: int, tally: Counter, null: int, nan: int, in_order: Callable[[], list[Any]]) -> Metrics:
    """A string column from the tally of its present values; `in_order()` lists all its values."""
    items = _items()
    limit = items.max_frequent_item_size  # whylogs truncates frequent items to 128 characters
    truncated: Counter = Counter()
    for value, count in tally.items():  # distinct strings with one 128-character prefix add up
        truncated[value[:limit]] += count
    if len(truncated) <= _FI_EXACT:
        for value, count in truncated.items():
            items.frequent_strings.value.update(value, count)
    else:  # more distinct items than the sketch holds exactly: per value, in order, like whylogs
        items.frequent_strings.value.update_str_list([v[:limit] for v in in_order() if isinstance(v, str)])
    return {
        "counts": _counts(n, null=null, nan=nan),
        "types": _types(string=n - null),
        "distribution": _distribution(VarianceM2Result(n=0, mean=0.0, m2=0.0)),
        "cardinality": _hll(list(tally)),  # first occurrences in order: HIP-exact
        "frequent_items": items,
    }


def _missing(value: Any) -> bool:
    """None or a float NaN: what pandas' `str` dtype stores as missing."""
    return value is None or (isinstance(value, (float, np.floating)) and value != value)


def object_metrics(values: np.ndarray, categorical: bool) -> Metrics | None:
    """str/None/NaN objects as why.log profiles them; None when pandas would not call it `str`."""
    if categorical and values.dtype.kind in "iub":  # `str` is one-to-one on these: tally, then convert
        tally = Counter({str(k): c for k, c in Counter(values.tolist()).items()})
        return _string_metrics(len(values), tally, 0, 0, lambda: [str(v) for v in values.tolist()])
    items = values.tolist()
    if categorical:  # monitor/reference.py: `str(v)` for every present value
        items = [v if type(v) is str else (None if _missing(v) else str(v)) for v in items]
    tally = Counter(items)  # C-speed, ~30 ns/value; its keys keep first-seen order
    null = nan = 0
    for key in [k for k in tally if type(k) is not str]:
        if isinstance(key, str):  # a str subclass (np.str_) is a string
            continue
        if not _missing(key):  # mixed objects: pandas keeps them `object`, not a string column
            return None
        count = tally.pop(key)
        null += count
        nan += 0 if key is None else count
    # pandas 3 infers its `str` dtype when there is a string, where whylogs counts every
    # missing value as nan too; an all-missing column stays `object` (only NaN is nan).
    return _string_metrics(len(items), tally, null, null if tally else nan, lambda: items)


def whylogs_column(name: str, values: np.ndarray) -> ColumnProfileView:
    """The rare column this module does not build (mixed objects, dates...): why.log's own."""
    import pandas as pd  # only here: the fast path needs no pandas

    return profile(pd.DataFrame({name: values})).get_column(name)


