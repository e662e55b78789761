"""Where a served row is in the prediction log, by request id, from Parquet footers alone.

The agents write every served row to the prediction log (vigil/predlog), sorted by
request_id in row groups whose footer statistics hold each group's min and max id. This
index keeps those ranges (reading footers only, never the rows), so the label join reads
just the few row groups that can hold a labelled id: the monitor does no work per row
served, only per labelled row and per file written. Generated ids are a worker prefix
plus a zero-padded counter, so one worker's row groups cover disjoint, narrow ranges.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from vigil.predlog import files

log = logging.getLogger("vigil.monitor")
# Columns a join needs; features stay in the file.
_SETTLED_NS = 2_000_000_000
_JOIN_COLUMNS = ("request_id", "model", "version", "task", "served_at", "prediction")


@dataclass(frozen=True)
class RowGroup:
    """One row group of a rows file and the request-id range it holds (None: unknown, always read)."""

    path: Path
    index: int
    low: str | None
    high: str | None

    def may_hold(self, ordered_ids: list[str]) -> bool:
        """True when some id of `ordered_ids` (sorted) falls in this group's range."""
        if self.low is None or self.high is None:
            return True
        at = bisect.bisect_left(ordered_ids, self.low)
        return at < len(ordered_ids) and ordered_ids[at] <= self.high


@dataclass(frozen=True)
class ServedRow:
    """A logged row as the join needs it."""

    request_id: str
    model: str
    version: str
    task: str
    served_at: float
    prediction: Any
    probabilities: dict[str, float]  # proba_<class> -> value


def _row_groups(path: Path) -> list[RowGroup]:
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(path).metadata
    names = [meta.schema.column(i).name for i in range(meta.num_columns)]
    if "request_id" not in names:
        return []
    column = names.index("request_id")
    groups = []
    for index in range(meta.num_row_groups):
        stats = meta.row_group(index).column(column).statistics
        known = stats is not None and stats.has_min_max
        groups.append(RowGroup(path, index, stats.min if known else None, stats.max if known else None))
    return groups


class RowIndex:
    """Request-id ranges of the prediction log's row groups, kept up to date incrementally."""

    def __init__(self, root: Path | None, horizon_seconds: float) -> None:
        self.root = root
        self.horizon = horizon_seconds  # labels older than this are not joined: neither are rows
        self._listed: dict[Path, int] = {}  # partition folder -> its mtime when last listed
        self._groups: dict[Path, list[RowGroup]] = {}

    @property
    def files(self) -> int:
        return len(self._groups)

    def refresh(self) -> list[RowGroup]:
        """Index files written since the last call (only folders whose mtime moved); returns their row groups."""
        base = self.root / files.ROWS if self.root is not None else None
        if base is None or not base.is_dir():
            return []
        oldest = files.day(time.time() - self.horizon)
        new: list[RowGroup] = []
        for partition in base.glob("model=*/date=*"):
            if partition.name.removeprefix("date=") < oldest:
                self._forget(partition)
                continue
            try:
                mtime = partition.stat().st_mtime_ns
            except FileNotFoundError:  # removed by retention meanwhile
                self._forget(partition)
                continue
            # A folder changed within the filesystem's timestamp granularity of the last listing
            # shows the same mtime twice: until its mtime is a while old, list it every time.
            if self._listed.get(partition) == mtime and time.time_ns() - mtime > _SETTLED_NS:
                continue
            self._listed[partition] = mtime
            present = {p for p in partition.glob("part-*.parquet")}
            for gone in [p for p in self._groups if p.parent == partition and p not in present]:
                del self._groups[gone]  # compacted into a new file, or expired
            for path in sorted(present - self._groups.keys()):
                try:
                    self._groups[path] = _row_groups(path)
                except Exception as exc:  # a foreign or damaged file: skipped, like every log reader does
                    log.warning("label join: skipping unreadable %s: %s", path, exc)
                    self._groups[path] = []
                new += self._groups[path]
        return new

    def _forget(self, partition: Path) -> None:
        self._listed.pop(partition, None)
        for path in [p for p in self._groups if p.parent == partition]:
            del self._groups[path]

    def groups(self) -> Iterable[RowGroup]:
        for groups in self._groups.values():
            yield from groups

    def find(self, ids: Iterable[str], within: Iterable[RowGroup] | None = None) -> list[ServedRow]:
        """The logged rows of `ids`, reading only the row groups (of `within`, default all) that may hold them."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        ordered = sorted(set(ids))
        if not ordered:
            return []
        by_file: dict[Path, list[int]] = {}
        for group in (self.groups() if within is None else within):
            if group.may_hold(ordered):
                by_file.setdefault(group.path, []).append(group.index)
        wanted = pa.array(ordered, pa.string())
        found: dict[str, ServedRow] = {}
        for path, indexes in by_file.items():
            try:
                parquet = pq.ParquetFile(path)
                columns = [c for c in parquet.schema_arrow.names if c in _JOIN_COLUMNS or c.startswith("proba_")]
                table = parquet.read_row_groups(sorted(set(indexes)), columns=columns)
            except FileNotFoundError:  # compacted away since the refresh: its rows are in the new file
                continue
            except Exception as exc:
                log.warning("label join: cannot read %s: %s", path, exc)
                continue
            hits = table.filter(pc.is_in(table["request_id"], value_set=wanted))
            probas = [c for c in hits.column_names if c.startswith("proba_")]
            for row in hits.to_pylist():
                found.setdefault(row["request_id"], ServedRow(
                    row["request_id"], row["model"], str(row["version"]), row.get("task") or "classification",
                    float(row["served_at"]), row["prediction"],
                    {c: row[c] for c in probas}))
        return list(found.values())
