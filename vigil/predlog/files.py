"""The prediction log on disk: layout, atomic writes, scanning, compaction, retention.

    <root>/rows/model=<name>/date=<YYYY-MM-DD>/part-<ns>-<pid>-<seq>.parquet   served rows
    <root>/labels/date=<YYYY-MM-DD>/part-<ns>-<pid>-<seq>.parquet              late labels

Every file carries all its columns (model, version, ... too): the `k=v` folder names
organise retention and compaction, readers never parse them. A file becomes visible
only by `os.replace` of a finished temp file (`.tmp-*`, ignored by readers), so no
reader ever sees half a file. A compacted file lists the files it replaces in its
Parquet metadata; readers skip those sources, so a crash between writing the merged
file and deleting its sources never counts a row twice.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

log = logging.getLogger("vigil.predlog")

ROWS, LABELS = "rows", "labels"
REQUIRED = {
    ROWS: {"request_id", "model", "version", "served_at", "sampling_rate"},
    LABELS: {"request_id", "label", "labelled_at"},
}
COMPACTED_FROM = b"vigil.compacted_from"
# Size tiers, as in an LSM tree's size-tiered compaction: a flushed file is level 0, a merge
# of level-L files is level L + 1, and only files of one level are merged together. Merging
# every small file regardless (as before) re-read each merged file with the next minute's
# flushes: at 7,000 rows/s every row was rewritten twice, ~1 µs of the agent's CPU a row each
# time (read 0.45 + write 0.55, measured on 5-s iris flushes). With tiers a busy partition
# rewrites each row once, a quiet one a few times (8 x more rows per level). Files merge only
# with files of the same columns and types (a model version with other features, or text
# labels after numeric ones, has its own files).
COMPACTION_LEVEL = b"vigil.compaction_level"
COMPACT_MIN_FILES = 8  # merge a level once it holds this many small files...
COMPACT_SMALL_BYTES = 8 << 20  # ...each below this size and
COMPACT_SMALL_ROWS = 500_000  # ...below this many rows...
COMPACT_MAX_INPUT_BYTES = 128 << 20  # ...reading at most this much per merge
# Rows bound memory, bytes do not: repetitive rows compress ~500 x, so 128 MB of files could
# be 4 million rows in memory, and a merged file still under 8 MB was merged again on every
# pass (a soak's agent reached 1.9 GB). A merged file of SMALL_ROWS is never read again.
COMPACT_MAX_INPUT_ROWS = 1_000_000
_TMP_MAX_AGE_S = 3600  # a temp file this old belongs to a writer that crashed
_seq = itertools.count()


def day(ts: float) -> str:
    """The UTC date partition of a Unix timestamp."""
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")


def rows_dir(root: Path, model: str, date: str) -> Path:
    return root / ROWS / f"model={quote(model, safe='')}" / f"date={date}"


def labels_dir(root: Path, date: str) -> Path:
    return root / LABELS / f"date={date}"


ROW_GROUP_ROWS = 16384
_FILTERED = {"served_at", "labelled_at"}  # numeric columns queries filter on: they keep statistics


def _ascending(column: "Any") -> bool:
    """True if the column is already in order: a worker's ids grow with its counter, so a
    flush of one agent's rows usually is, and the check (~0.1 µs a row) spares the sort's
    gather of every column (~0.3 µs a row, the largest part of a flush)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(values)
    return bool(pc.all(pc.greater_equal(values.slice(1), values.slice(0, n - 1))).as_py())


def write_table(table: "Any", directory: Path, metadata: dict[bytes, bytes] | None = None, *,
                compacted: bool = False) -> Path:
    """Write a pyarrow Table as a new part file, atomically (temp file + fsync + rename).

    Rows are stored sorted by `request_id`, in row groups of ROW_GROUP_ROWS: each row
    group's min/max statistics then cover a narrow range of ids, so the monitor's label
    join reads only the row groups that can hold a labelled id (monitor/row_index.py).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    directory.mkdir(parents=True, exist_ok=True)
    name = f"part-{time.time_ns():020d}-{os.getpid()}-{next(_seq):06d}.parquet"
    tmp = directory / f".tmp-{name}"
    # One contiguous chunk per column when the chunks are small: a flush concatenates dozens
    # of 100-ms record tables, and the writer's per-chunk work was a fifth of the write
    # (0.36 -> 0.28 µs a row). A compaction's chunks are whole row groups already: copying
    # them cost it 0.19 µs a row for nothing. Column by column: pyarrow 25's
    # Table.combine_chunks took 0.41 µs a row on a 37-chunk table, one column at a time 0.02.
    chunks = table.column(0).num_chunks if table.num_columns else 0
    if chunks > 1 and table.num_rows < chunks * (ROW_GROUP_ROWS // 4):
        table = pa.Table.from_arrays([column.combine_chunks() for column in table.columns], schema=table.schema)
    if "request_id" in table.column_names and table.num_rows > 1 and not _ascending(table["request_id"]):
        table = table.sort_by("request_id")
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    # Measured on a 5-s flush of iris rows (50,000): zstd level 1 writes in ~0.44 µs a row
    # (the default level ~0.85) and lz4 in ~0.31 (30 % more bytes); reading back, which a
    # compaction does with every fresh file, ~0.33 vs ~0.22. So fresh files, which live
    # until the next compaction, are lz4, and compacted ones, which stay, are zstd-1.
    # Dictionary pages only for the repeated text columns (model, version, batch id; not the
    # unique ids or the floats): ~0.37 µs and 20 % fewer bytes than everywhere. Statistics
    # only for the metadata columns, which queries filter on (request_id's min/max prune the
    # label join, monitor/row_index.py); on the floats they cost ~0.06 µs a row for nothing.
    text = [f.name for f in table.schema if str(f.type) in ("string", "large_string")]
    repeated = [name for name in text if name != "request_id"]
    codec = {"compression": "zstd", "compression_level": 1} if compacted else {"compression": "lz4"}
    pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, use_dictionary=repeated,
                   write_statistics=[name for name in table.column_names if name in text or name in _FILTERED],
                   **codec)
    # fsync before the rename: after a power cut the visible name never points at a
    # file whose blocks were not written yet.
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / name)
    return directory / name


@dataclass
class Scan:
    """The readable part files of one kind, and what was skipped and why."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    superseded: list[Path] = field(default_factory=list)  # merged already; left by a crash


_footers: dict[tuple[str, int, int], tuple[set[str], list[str], int, tuple[tuple[str, str], ...]]] = {}


def _footer(path: Path) -> tuple[set[str], list[str], int, tuple[tuple[str, str], ...]]:
    """Column names, compacted-from list, compaction level and column types of a Parquet file (cached by size + mtime)."""
    import pyarrow.parquet as pq

    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _footers:
        schema = pq.read_schema(path)
        meta = schema.metadata or {}
        sources = json.loads(meta[COMPACTED_FROM]) if COMPACTED_FROM in meta else []
        # A merged file written before levels existed counts as level 1.
        level = int(meta[COMPACTION_LEVEL]) if COMPACTION_LEVEL in meta else (1 if sources else 0)
        _footers[key] = (set(schema.names), sources, level, tuple((f.name, str(f.type)) for f in schema))
    return _footers[key]


def level(path: Path) -> int:
    """How many merges a file's rows went through (0: written by a flush)."""
    return _footer(path)[2]


def _tier(path: Path) -> tuple[int, tuple[tuple[str, str], ...]]:
    """What a file merges with: its level, and the same columns of the same types."""
    _, _, depth, columns = _footer(path)
    return depth, columns


def _candidates(base: Path) -> Iterable[Path]:
    if not base.is_dir():
        return []
    return sorted(p for p in base.rglob("*") if p.is_file() and not p.name.startswith("."))


def scan(root: Path, kind: str, warn: bool = True) -> Scan:
    """Every valid part file under `root/kind`; corrupt or foreign files are skipped (warned)."""
    return scan_dir(root / kind, kind, warn)


def scan_dir(base: Path, kind: str, warn: bool = True) -> Scan:
    """`scan` of one folder (and below): the files of `kind` a reader should use."""
    result = Scan()
    superseded: set[Path] = set()
    for path in _candidates(base):
        try:
            columns, sources, _, _ = _footer(path)
        except FileNotFoundError:  # compacted or expired meanwhile
            continue
        except Exception as exc:  # not Parquet, truncated, unreadable
            result.skipped.append((path, f"not a readable Parquet file ({type(exc).__name__}: {exc})"))
            continue
        missing = REQUIRED[kind] - columns
        if missing:
            result.skipped.append((path, f"not a prediction-log file (missing {', '.join(sorted(missing))})"))
            continue
        result.files.append(path)
        superseded.update(path.parent / s for s in sources)
    result.superseded = [p for p in result.files if p in superseded]
    result.files = [p for p in result.files if p not in superseded]
    if warn:
        for path, reason in result.skipped:
            log.warning("prediction log: skipping %s: %s", path, reason)
    return result


@dataclass
class Maintenance:
    """What one compaction/retention pass did."""

    merged_files: int = 0
    written_files: int = 0
    deleted_partitions: list[Path] = field(default_factory=list)


def _partitions(root: Path, kind: str) -> list[Path]:
    base = root / kind
    pattern = "model=*/date=*" if kind == ROWS else "date=*"
    return sorted(p for p in base.glob(pattern) if p.is_dir()) if base.is_dir() else []


def compact_partition(directory: Path, kind: str, result: Maintenance | None = None) -> Maintenance:
    """Merge the small files of one partition into one (one compactor per partition at a time)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    result = result or Maintenance()
    lock = os.open(directory / ".compact.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # another process is compacting it
            return result
        found = scan_dir(directory, kind, warn=False)
        for stale in found.superseded:  # a compactor died before deleting its sources
            stale.unlink(missing_ok=True)
        tiers: dict[tuple[int, Any], list[Path]] = {}
        for path in found.files:
            tiers.setdefault(_tier(path), []).append(path)
        for tier in sorted(tiers):  # one merge per tier and pass: memory stays bounded
            small = _small_files(tiers[tier])
            if len(small) < COMPACT_MIN_FILES:
                continue
            table = pa.concat_tables([pq.read_table(p) for p in small])
            names = json.dumps([p.name for p in small]).encode()
            write_table(table.replace_schema_metadata(None), directory,
                        {COMPACTED_FROM: names, COMPACTION_LEVEL: str(tier[0] + 1).encode()}, compacted=True)
            for path in small:
                path.unlink(missing_ok=True)
            result.merged_files += len(small)
            result.written_files += 1
        return result
    finally:
        os.close(lock)


def _small_files(paths: list[Path]) -> list[Path]:
    """The files of one level worth merging, oldest first, within the per-merge limits."""
    import pyarrow.parquet as pq

    small, total, total_rows = [], 0, 0
    for path in paths:
        size = path.stat().st_size
        if size >= COMPACT_SMALL_BYTES or total + size > COMPACT_MAX_INPUT_BYTES:
            continue
        rows = pq.ParquetFile(path).metadata.num_rows  # the footer only
        if rows < COMPACT_SMALL_ROWS and total_rows + rows <= COMPACT_MAX_INPUT_ROWS:
            small.append(path)
            total, total_rows = total + size, total_rows + rows
    return small


def compact(root: Path, kind: str) -> Maintenance:
    """Compact every partition of `kind` that has enough small files."""
    result = Maintenance()
    for partition in _partitions(root, kind):
        try:
            compact_partition(partition, kind, result)
        except Exception as exc:  # one bad partition must not stop the others
            log.warning("prediction log: cannot compact %s: %s", partition, exc)
    return result


def expire(root: Path, kind: str, retention_days: int, now: float | None = None) -> Maintenance:
    """Delete whole date partitions older than the retention, and only those."""
    result = Maintenance()
    today = dt.datetime.fromtimestamp(now or time.time(), dt.timezone.utc).date()
    cutoff = today - dt.timedelta(days=retention_days)
    for partition in _partitions(root, kind):
        try:
            date = dt.date.fromisoformat(partition.name.removeprefix("date="))
        except ValueError:  # not one of ours: leave it alone
            continue
        if date < cutoff:
            shutil.rmtree(partition, ignore_errors=True)
            result.deleted_partitions.append(partition)
        else:
            _clean_tmp(partition, now or time.time())
    return result


def _clean_tmp(partition: Path, now: float) -> None:
    for tmp in partition.glob(".tmp-*"):
        try:
            if now - tmp.stat().st_mtime > _TMP_MAX_AGE_S:
                tmp.unlink()
        except FileNotFoundError:
            pass


def maintain(root: Path, kind: str, retention_days: int) -> Maintenance:
    """One retention + compaction pass (the agent runs it for rows, the monitor for labels)."""
    done = expire(root, kind, retention_days)
    merged = compact(root, kind)
    done.merged_files, done.written_files = merged.merged_files, merged.written_files
    return done
