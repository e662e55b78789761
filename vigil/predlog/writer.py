"""Append served rows and labels to the prediction log (Parquet, atomic, buffered, sampled).

Served rows are buffered in memory and written every `flush_seconds` (or sooner when the
buffer is large), one file per model and date partition. That buffer is the crash bound:
a process killed without warning loses at most the rows appended since its last flush,
i.e. the last `flush_seconds` (plus the time one write takes). Everything flushed before
stays, because a file is visible only once complete (files.write_table).

Sampling keeps every row while the traffic stays under `max_rows_per_second`; above it
each row is kept with probability p = limit / observed rate, and p is stored per row in
`sampling_rate`, so `SUM(1 / sampling_rate)` estimates the rows served (Horvitz-Thompson:
p depends only on traffic before the row, so the estimate stays unbiased).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from vigil.predlog import files
from vigil.served_batch import ServedBatch, widen_float32

PROBA_PREFIX = "proba_"
META_COLUMNS = ("request_id", "batch_id", "model", "version", "task", "served_at")
MAX_BUFFERED_ROWS = 100_000  # flush early past this: bounds the agent's memory


class RateSampler:
    """Keep-probability per batch: 1 up to `limit` rows/s, then limit / observed rate."""

    def __init__(self, limit: int, seed: int | None = None) -> None:
        self.limit = limit
        self._rng = np.random.default_rng(seed)
        self._second = 0
        self._count = 0  # rows seen in the current second
        self._previous = 0  # rows seen in the second before

    def rate(self, timestamp: float, rows: int) -> float:
        second = int(timestamp)
        if second != self._second:
            self._previous = self._count if second == self._second + 1 else 0
            self._second, self._count = second, 0
        self._count += rows
        observed = max(self._previous, self._count)
        return 1.0 if self.limit <= 0 or observed <= self.limit else self.limit / observed

    def keep(self, rate: float, rows: int) -> np.ndarray | None:
        """A boolean mask of kept rows, or None when all are kept."""
        return None if rate >= 1.0 else self._rng.random(rows) < rate


def _widen(values: np.ndarray) -> np.ndarray:
    return widen_float32(values) if values.dtype == np.float32 else values


def _scalar_array(values: Any) -> "Any":
    import pyarrow as pa

    arr = np.asarray(values)
    if arr.dtype.kind in "OUS":
        return pa.array([str(v) for v in arr.tolist()], pa.string())
    return pa.array(arr)


class Buffered:
    """One partition's rows since the last flush, kept as the records' own column arrays.

    Appending keeps references (plus the sampled or widened copies); the flush concatenates
    each column once and builds one Arrow table. Building an Arrow table per 100-ms record
    and concatenating the tables at the flush (as before) cost ~180 µs a record in table
    building and a per-chunk pass in the writer (`python -m loadtest.agent_cost`).
    Records whose columns differ (a new model version with other features) go in separate
    groups, one file each (their columns may not even share a type: numeric labels, then text).
    """

    def __init__(self) -> None:
        self.groups: dict[tuple[Any, ...], dict[str, list[Any]]] = {}
        self.rows = 0

    def add(self, batch: ServedBatch, rate: float, mask: np.ndarray | None) -> int:
        """Buffer a batch's kept rows (`mask`: None keeps all); returns how many."""
        pick = (lambda a: a) if mask is None else (lambda a: np.asarray(a)[mask])
        rows = len(batch.predictions)
        kept = rows if mask is None else int(mask.sum())
        if not kept:
            return 0
        columns: dict[str, np.ndarray] = {"served_at": pick(np.asarray(batch.served_at(), dtype=np.float64))}
        for name, values in batch.columns.items():
            columns[str(name)] = pick(_widen(np.asarray(values)))
        columns["prediction"] = pick(np.asarray(batch.predictions))
        if batch.scores is not None and len(batch.classes):
            scores = np.asarray(batch.scores, dtype=float).reshape(rows, len(batch.classes))
            for i, cls in enumerate(batch.classes):
                columns[f"{PROBA_PREFIX}{cls}"] = pick(scores[:, i])
        signature = tuple((name, array.dtype.kind) for name, array in columns.items())
        group = self.groups.get(signature)
        if group is None:
            group = self.groups[signature] = {"ids": [], "runs": [], **{name: [] for name in columns}}
        # The worker's ids are str already: kept as they are, without ServedBatch.ids()'s
        # str() per id (~40 ns each); anything else is converted at the flush (_id_array).
        ids = batch.request_ids if isinstance(batch.request_ids, list) else batch.ids()
        group["ids"].extend(ids if mask is None else [i for i, keep in zip(ids, mask) if keep])
        group["runs"].append((batch.batch_id, batch.model, str(batch.version), batch.task, float(rate), kept))
        for name, array in columns.items():
            group[name].append(array)
        self.rows += kept
        return kept

    def tables(self) -> dict[tuple[Any, ...], "Any"]:
        """One Arrow table per group of like columns (META_COLUMNS first, then features, prediction, scores)."""
        return {signature: _group_table(group) for signature, group in self.groups.items()}

    def drop(self, signature: tuple[Any, ...], rows: int) -> None:
        """Forget a group once it is written."""
        del self.groups[signature]
        self.rows -= rows


def _id_array(ids: list[Any]) -> "Any":
    """Request ids as an Arrow string array; ids that are not all str read as `str(id)`."""
    import pyarrow as pa

    try:
        array = pa.array(ids, pa.string())
        if not array.null_count:
            return array
    except (pa.ArrowException, TypeError):
        pass
    return pa.array([str(i) for i in ids], pa.string())


def _group_table(group: dict[str, list[Any]]) -> "Any":
    import pyarrow as pa

    runs = group["runs"]
    counts = [run[5] for run in runs]

    def repeated(i: int, kind: Any) -> Any:  # one value per record, repeated in C
        return pa.concat_arrays([pa.repeat(pa.scalar(run[i], kind), run[5]) for run in runs])

    columns: dict[str, Any] = {
        "request_id": _id_array(group["ids"]),
        "batch_id": repeated(0, pa.string()),
        "model": repeated(1, pa.string()),
        "version": repeated(2, pa.string()),
        "task": repeated(3, pa.string()),
    }
    for name, arrays in group.items():
        if name not in ("ids", "runs"):
            columns[name] = _scalar_array(arrays[0] if len(arrays) == 1 else np.concatenate(arrays))
    columns["sampling_rate"] = pa.array(np.repeat([run[4] for run in runs], counts), pa.float64())
    return pa.table(columns)


@dataclass
class RowLog:
    """The served-rows writer: sample, buffer per partition, flush atomically."""

    root: Path
    flush_seconds: float = 5.0
    max_rows_per_second: int = 0
    seed: int | None = None
    stats: dict[str, int] = field(default_factory=lambda: {
        "rows_in": 0, "rows_written": 0, "rows_sampled_out": 0, "files_written": 0, "write_errors": 0})

    def __post_init__(self) -> None:
        self._sampler = RateSampler(self.max_rows_per_second, self.seed)
        self._buffer: dict[tuple[str, str], Buffered] = {}
        self._buffered = 0
        self._last_flush = time.monotonic()
        self.last_flush_seconds = 0.0

    @property
    def buffered_rows(self) -> int:
        return self._buffered

    def append(self, batch: ServedBatch) -> int:
        """Buffer the batch's sampled rows; returns how many were kept."""
        rows = batch.rows
        if batch.request_ids is not None and len(batch.request_ids) != rows:
            raise ValueError(f"batch {batch.batch_id}: {len(batch.request_ids)} request ids for {rows} rows")
        rate = self._sampler.rate(batch.timestamp, rows)
        mask = self._sampler.keep(rate, rows)
        key = (batch.model, files.day(batch.timestamp))
        buffered = self._buffer.get(key)
        if buffered is None:
            buffered = self._buffer[key] = Buffered()
        kept = buffered.add(batch, rate, mask)
        self.stats["rows_in"] += rows
        self.stats["rows_sampled_out"] += rows - kept
        self._buffered += kept
        if self._buffered >= MAX_BUFFERED_ROWS:
            self.flush()
        return kept

    def due(self) -> bool:
        """True once the flush interval has passed since the last flush."""
        return time.monotonic() - self._last_flush >= self.flush_seconds

    def flush(self) -> int:
        """Write every buffered partition as one new file (one per group of like columns); returns rows written."""
        started = time.perf_counter()
        written = 0
        for (model, date), buffered in list(self._buffer.items()):
            for signature, table in buffered.tables().items():
                try:
                    files.write_table(table, files.rows_dir(self.root, model, date))
                except Exception as exc:  # disk full, permissions: keep the rows, retry next time
                    self.stats["write_errors"] += 1
                    files.log.warning("prediction log: cannot write %s/%s (%s); will retry", model, date, exc)
                    continue
                buffered.drop(signature, table.num_rows)
                written += table.num_rows
                self._buffered -= table.num_rows
                self.stats["files_written"] += 1
            if not buffered.groups:
                del self._buffer[(model, date)]
        self.stats["rows_written"] += written
        self._last_flush = time.monotonic()
        self.last_flush_seconds = time.perf_counter() - started
        return written


def label_table(records: Sequence[Mapping[str, Any]], now: float | None = None) -> "Any":
    """Arrow table of labels: request_id, label (text), outcome, value, labelled_at."""
    import pyarrow as pa

    now = time.time() if now is None else now
    return pa.table({
        "request_id": pa.array([str(r["request_id"]) for r in records], pa.string()),
        "label": pa.array([None if r.get("label") is None else str(r["label"]) for r in records], pa.string()),
        "outcome": pa.array([r.get("outcome") for r in records], pa.bool_()),
        "value": pa.array([r.get("value") for r in records], pa.float64()),
        "labelled_at": pa.array([float(r.get("labelled_at", now)) for r in records], pa.float64()),
    })


def append_labels(root: Path, records: Sequence[Mapping[str, Any]], now: float | None = None) -> Path | None:
    """Write labels as one new file of today's `labels/` partition (atomic); None if empty."""
    if not records:
        return None
    now = time.time() if now is None else now
    return files.write_table(label_table(records, now), files.labels_dir(root, files.day(now)))
