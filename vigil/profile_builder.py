"""whylogs profiles built straight from numpy columns, without `why.log(DataFrame)`.

`why.log` costs ~18 ms per call and ~10 µs per row (8 columns) in its Python layer; the
sketches it wraps cost tens of ns per value. Here every sketch gets one vectorized update,
into whylogs' own metric classes (same metrics, config and wire form): `build_view` for a
batch, `ProfileAccumulator` for many small batches and one view per slice.

Per dtype, a column gets the metrics `why.log` gives it on pandas 3 (floats: counts, types,
distribution, cardinality; ints and bools: also ints and frequent items; str or str/None
objects: counts, types, empty distribution, cardinality, frequent items; anything else goes
to `why.log` itself). Counts, types, mean/m2, HLL and frequent items are equal to `why.log`'s
on the same rows (tests/test_profile_builder.py). The one deliberate difference: KLL gets
the values sorted. Up to k=1024 values it keeps them all (no difference); beyond, it is
another valid KLL (whylogs' is randomized too). Measured, 20 trials per case: sorting first
makes the update 3-4x cheaper (~45 -> ~10 ns/value with the sort: KLL sorts each full
level-0 buffer, and sorted runs sort in linear time) and the worst rank error over 999
quantiles stayed at or below unsorted input's (0.0021 vs 0.0024 at 32,768 normal values;
KLL's 99 % bound for k=1024 is 0.0027).
"""

from __future__ import annotations

import threading
from functools import reduce
from operator import attrgetter
from datetime import datetime, timezone
from typing import Any, Collection, Mapping

import numpy as np

from vigil.profile_metrics import bool_metrics, float_metrics, int_metrics, object_metrics, whylogs_column
from vigil.served_batch import widen_float32
from vigil.whylogs_compat import whylogs

whylogs()  # the numpy 2 shim must run before any whylogs module is imported

from whylogs.core.metadata import _populate_common_profile_metadata  # noqa: E402
from whylogs.core.view import ColumnProfileView, DatasetProfileView  # noqa: E402

__all__ = ["ProfileAccumulator", "build_column", "build_view", "view_of", "widen_float32"]


def build_column(values: Any, *, name: str = "column", categorical: bool = False, widen: bool = True) -> ColumnProfileView:
    """The whylogs column profile of one 1-D array (see the module docstring for the rules)."""
    x = values if isinstance(values, np.ndarray) else np.asarray(values)
    if x.ndim != 1:
        raise ValueError(f"column {name!r}: expected a 1-D array, got shape {x.shape}")
    kind = x.dtype.kind
    if widen and x.dtype == np.float32:
        x, kind = widen_float32(x), "f"
    with np.errstate(all="ignore"):  # ±inf makes mean/var NaN, as in why.log
        if categorical or kind in "OU":
            metrics = object_metrics(x, categorical)
        elif kind == "f":
            metrics = float_metrics(x.astype(np.float64, copy=False))
        elif kind in "iu":
            metrics = int_metrics(x)
        elif kind == "b":
            metrics = bool_metrics(x)
        else:
            metrics = None
    if metrics is None:
        return whylogs_column(name, x)
    return ColumnProfileView(metrics=metrics)


def view_of(columns: Mapping[str, ColumnProfileView], dataset_timestamp: float | datetime | None = None) -> DatasetProfileView:
    """A dataset view of column views, with the timestamps and metadata why.log sets."""
    now = datetime.now(timezone.utc)
    if isinstance(dataset_timestamp, (int, float)):
        dataset_timestamp = datetime.fromtimestamp(dataset_timestamp, tz=timezone.utc)
    return DatasetProfileView(columns=dict(columns), dataset_timestamp=dataset_timestamp or now, creation_timestamp=now,
                              metrics={}, metadata=_populate_common_profile_metadata())


def build_view(columns: Mapping[str, Any], *, categorical: Collection[str] = frozenset(),
               dataset_timestamp: float | datetime | None = None, widen: bool = True) -> DatasetProfileView:
    """The profile of equal-length columns, as `why.log(pd.DataFrame(columns))` reads.

    `categorical`: columns profiled as strings whatever their dtype. float32 arrays are
    widened unless `widen` is False. `dataset_timestamp`: epoch seconds (None: now)."""
    arrays = {name: np.asarray(values) for name, values in columns.items()}
    if len({len(x) for x in arrays.values()}) > 1:
        raise ValueError(f"columns of different lengths: { {name: len(x) for name, x in arrays.items()} }")
    views = {name: build_column(x, name=name, categorical=name in categorical, widen=widen) for name, x in arrays.items()}
    return view_of(views, dataset_timestamp)


class ProfileAccumulator:
    """Collects batches of columns and builds one profile of all their rows.

    `append` only keeps references (do not mutate the arrays afterwards); the sketches run
    once per `build`, over the concatenated columns, so a slice of many small batches costs
    about what one big batch does. One thread may append while another builds.
    """

    def __init__(self, *, categorical: Collection[str] = frozenset(), widen: bool = True) -> None:
        self.categorical = frozenset(categorical)
        self.widen = widen
        self._lock = threading.Lock()
        self._batches: list[Mapping[Any, np.ndarray]] = []
        self._rows = 0

    @property
    def rows(self) -> int:
        return self._rows  # since the last build

    def append(self, columns: Mapping[str | tuple[str, ...], np.ndarray]) -> int:
        """Add one batch, return its rows. A key names a 1-D column, or is a tuple of names for a
        [rows, len(names)] array (a feature matrix: one entry, no copy). A column missing from
        some batches counts only the others' rows."""
        rows = -1
        for key, x in columns.items():  # checked here, where the caller can be named (~0.2 µs each)
            shape = x.shape if type(x) is np.ndarray else ()
            matrix = type(key) is tuple
            if len(shape) != 1 + matrix or (matrix and shape[1] != len(key)) or (rows >= 0 and shape[0] != rows):
                raise ValueError(f"{key!r}: expected a {'[rows, names]' if matrix else '1-D'} numpy array with the "
                                 f"batch's rows, got {shape or type(x).__name__}")
            rows = shape[0]
        with self._lock:
            self._batches.append(columns)
            self._rows += max(rows, 0)
        return max(rows, 0)

    def build(self, dataset_timestamp: float | datetime | None = None) -> DatasetProfileView | None:
        """The profile of every row appended since the last build (None if none was); resets."""
        with self._lock:
            batches, rows = self._batches, self._rows
            self._batches, self._rows = [], 0
        if not rows:
            return None
        pieces: dict[str, list[np.ndarray]] = {}
        for key, arrays in _gather(batches).items():
            for block in _by_family(arrays, self.widen):  # a matrix: one transposing copy, then contiguous rows
                for name, x in zip(key, np.ascontiguousarray(block.T)) if type(key) is tuple else [(key, block)]:
                    pieces.setdefault(name, []).append(x)
        views = {}  # batches of different dtypes are built apart and merged, like two why.log profiles
        for name, arrays in pieces.items():
            views[name] = reduce(ColumnProfileView.merge, [
                build_column(x, name=name, categorical=name in self.categorical, widen=self.widen)
                for x in _by_family(arrays, self.widen)])
        return view_of(views, dataset_timestamp)


_DTYPE = attrgetter("dtype")
_CASTS = {"f": np.float64, "i": np.int64, "u": np.int64, "U": object, "O": object}


def _gather(batches: list[Mapping[Any, np.ndarray]]) -> dict[Any, list[np.ndarray]]:
    """Each key's arrays, in batch order (~15 ns per array when every batch has the same keys)."""
    keys = list(batches[0])
    try:
        out = {key: [b[key] for b in batches] for key in keys}
        if sum(map(len, batches)) == len(keys) * len(batches):  # no batch has other keys
            return out
    except KeyError:
        pass
    out = {}
    for batch in batches:
        for key, x in batch.items():
            out.setdefault(key, []).append(x)
    return out


def _by_family(arrays: list[np.ndarray], widen: bool) -> list[np.ndarray]:
    """The arrays concatenated, one per dtype family (a single one in the usual case)."""
    if len(arrays) == 1:
        return arrays
    if len(set(map(_DTYPE, arrays))) == 1:  # the usual case (~20 ns/array; concatenate ~90)
        return [np.concatenate(arrays)]
    families: dict[Any, list[np.ndarray]] = {}
    for x in arrays:  # float32 stays apart (it is widened); the rest is cast to one dtype per kind
        cast = np.float32 if widen and x.dtype == np.float32 else _CASTS.get(x.dtype.kind, x.dtype)
        families.setdefault(cast, []).append(x.astype(cast, copy=False))
    return [m[0] if len(m) == 1 else np.concatenate(m) for m in families.values()]
