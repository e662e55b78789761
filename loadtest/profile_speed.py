"""How fast a served batch is profiled: `why.log(DataFrame)` against vigil/profile_builder.py.

    python -m loadtest.profile_speed [--cpu 1] [--repeats 15] [--rows 1,256,4096,32768]

The columns have the iris serving shape widened to 8 features: 8 float32 feature columns
(widened the way the service widens them), a `prediction` string column of 3 classes and 3
`proba_*` float64 columns. Values are either continuous (every value distinct: the worst
case for the cardinality sketch) or iris-like (one decimal, few distinct values). Each
figure is the median of `--repeats` timed calls (a third of them at 32,768 rows), the
implementations interleaved so that load from other processes hits both alike; the process
pins itself to `--cpu`. On a shared machine run it a few times: the ratios hold, the absolute
figures move with the load.

Rows:
- `why.log`: widen + `pd.DataFrame` + `why.log(...).view()` (what the serving path does today);
- `build_view`: the same columns straight from numpy;
- `accumulate/N`: the rows appended in batches of N (one `append` each: the feature and
  score matrices as they are, the labels), then one `build`: the per-slice path, all-in;
- `serialize`: `DatasetProfileView.serialize()` of the built view (paid once per profile).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

import numpy as np

FEATURES = [f"f{i}" for i in range(8)]
CLASSES = ["setosa", "versicolor", "virginica"]
PROBA = [f"proba_{c}" for c in CLASSES]


def make_batch(rows: int, kind: str, seed: int = 0) -> dict[str, np.ndarray]:
    """One batch as the service hands it over: features [rows, 8] float32, labels, scores."""
    rng = np.random.default_rng(seed)
    features = rng.normal(5.0, 2.0, size=(rows, len(FEATURES)))
    if kind == "iris":
        features = np.round(np.abs(features), 1)
    scores = rng.dirichlet(np.ones(len(CLASSES)), size=rows)
    labels = np.asarray(CLASSES, dtype=object)[scores.argmax(axis=1)]
    return {"features": features.astype(np.float32), "labels": labels, "scores": scores}


def columns_of(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The profiled columns of a batch (features as contiguous float32 columns)."""
    cols = {name: np.ascontiguousarray(batch["features"][:, i]) for i, name in enumerate(FEATURES)}
    cols["prediction"] = batch["labels"]
    cols.update({name: np.ascontiguousarray(batch["scores"][:, i]) for i, name in enumerate(PROBA)})
    return cols


def run_whylogs(batch: dict[str, np.ndarray]) -> Any:
    import pandas as pd

    from vigil.profile_builder import widen_float32
    from vigil.whylogs_compat import profile

    cols = columns_of(batch)
    frame = pd.DataFrame({k: widen_float32(v) if v.dtype == np.float32 else v for k, v in cols.items()})
    return profile(frame)


def run_builder(batch: dict[str, np.ndarray]) -> Any:
    from vigil.profile_builder import build_view

    return build_view(columns_of(batch))


def run_accumulator(batch: dict[str, np.ndarray], per_append: int) -> Any:
    from vigil.profile_builder import ProfileAccumulator

    acc = ProfileAccumulator()
    features, labels, scores = batch["features"], batch["labels"], batch["scores"]
    # Slicing is the caller's cost, not the accumulator's: cut the batches before timing.
    parts = [(features[i:i + per_append], labels[i:i + per_append], scores[i:i + per_append])
             for i in range(0, len(labels), per_append)]
    started = time.perf_counter()
    features_key, proba_key = tuple(FEATURES), tuple(PROBA)
    for f, lab, s in parts:
        acc.append({features_key: f, "prediction": lab, proba_key: s})
    view = acc.build()
    return time.perf_counter() - started, view


def timed(fn: Callable[[], Any]) -> float:
    """Seconds one call takes (or what the callee measured itself)."""
    started = time.perf_counter()
    out = fn()
    if isinstance(out, tuple):  # the callee timed itself
        return out[0]
    return time.perf_counter() - started


def measure(rows_list: list[int], repeats: int, kinds: list[str]) -> list[dict[str, Any]]:
    results = []
    for kind in kinds:
        for rows in rows_list:
            batch = make_batch(rows, kind)
            cases: dict[str, Callable[[], Any]] = {
                "why.log": lambda: run_whylogs(batch),
                "build_view": lambda: run_builder(batch),
            }
            for n in (1, 16):
                if rows >= n and rows // n <= 40_000:
                    cases[f"accumulate/{n}"] = lambda n=n: run_accumulator(batch, n)
            built = run_builder(batch)
            cases["serialize"] = built.serialize
            for fn in cases.values():  # warm up imports and caches
                fn()
            timings: dict[str, list[float]] = {name: [] for name in cases}
            reps = repeats if rows < 32768 else max(3, repeats // 3)  # why.log takes ~0.5 s there
            for _ in range(reps):
                for name, fn in cases.items():
                    timings[name].append(timed(fn))
            for name, ts in timings.items():
                ms = statistics.median(ts) * 1e3
                results.append({"kind": kind, "rows": rows, "case": name, "ms": ms, "us_per_row": ms * 1e3 / rows})
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| values | rows | case | ms per call | µs per row |", "|---|---:|---|---:|---:|"]
    for r in results:
        lines.append(f"| {r['kind']} | {r['rows']:,} | {r['case']} | {r['ms']:.3f} | {r['us_per_row']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", type=int, default=1, help="core to pin to (-1: do not pin)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--rows", default="1,256,4096,32768")
    parser.add_argument("--kinds", default="continuous,iris")
    args = parser.parse_args(argv)
    if args.cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})  # what `taskset -c` does
    rows = [int(r) for r in args.rows.split(",")]
    print(table(measure(rows, args.repeats, args.kinds.split(","))))


if __name__ == "__main__":
    main()
