"""Served rows in slices: one whylogs profile per model version, monitor window and slice of time.

Profiling costs per profile far more than per row (a view and its serialization take a
few ms; each row ~0.5 µs, vigil/profile_builder.py). So the agent does not profile batches:
it appends them to the open slice of their model version and window (references only)
and builds one profile when the slice is `VIGIL_PROFILE_SLICE_SECONDS` old, holds
`VIGIL_PROFILE_SLICE_ROWS` rows, or its window has ended. The monitoring cost then follows
the number of profiles (a few per second), not the number of rows or batches served.
A slice never spans two windows: the message's timestamp picks its window.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from serving.producer.message import categorical_outputs, profile_message, profiled_columns
from vigil.profile_builder import ProfileAccumulator
from vigil.served_batch import ServedBatch

Key = tuple[str, str, int]  # model, version, window index


@dataclass
class Slice:
    """The open slice of one model version in one window."""

    model: str
    version: str
    task: str
    classes: Sequence[Any]
    first_served: float  # event time of its first row: the message's timestamp
    opened: float  # monotonic: when it is due
    accumulator: ProfileAccumulator
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @property
    def rows(self) -> int:
        return self.accumulator.rows

    def message(self, producer: str) -> bytes:
        """Build the slice's profile and its contract-v2 message (ms: call it off any hot path)."""
        view = self.accumulator.build(self.first_served)
        assert view is not None, "a slice holds at least one row"
        return profile_message(model=self.model, version=self.version, task=self.task, classes=self.classes,
                               timestamp=self.first_served, rows=view_rows(view), profile=view.serialize(),
                               producer=producer, batch_id=self.batch_id)


def view_rows(view: Any) -> int:
    """The rows a profile covers (every column counts every row)."""
    return int(view.get_column(next(iter(view.get_columns()))).get_metric("counts").n.value)


class Slicer:
    """Open slices by model version and window; `due` hands back the ones to send."""

    def __init__(self, window_seconds: int, slice_seconds: float, slice_rows: int) -> None:
        self.window = window_seconds
        self.slice_seconds = slice_seconds
        self.slice_rows = slice_rows
        self._open: dict[Key, Slice] = {}

    @property
    def rows(self) -> int:
        """Rows in open slices (not yet profiled)."""
        return sum(s.rows for s in self._open.values())

    def add(self, batch: ServedBatch) -> None:
        """Append a batch's rows to their slices (split where a window boundary falls inside it)."""
        served = batch.served_at()
        windows = (served // self.window).astype(np.int64)
        if windows[0] == windows[-1]:  # rows are in serving order: the common case is one window
            self._append(batch, int(windows[0]), float(served[0]), None)
            return
        for index in np.unique(windows):
            mask = windows == index
            self._append(batch, int(index), float(served[mask][0]), mask)

    def _append(self, batch: ServedBatch, window: int, first: float, mask: np.ndarray | None) -> None:
        key = (batch.model, batch.version, window)
        current = self._open.get(key)
        if current is None:
            current = self._open[key] = Slice(
                batch.model, batch.version, batch.task, list(batch.classes), first, time.monotonic(),
                ProfileAccumulator(categorical=categorical_outputs(batch.task)))
        columns = profiled_columns(batch)
        current.accumulator.append(columns if mask is None else {k: v[mask] for k, v in columns.items()})

    def seconds_to_next(self) -> float | None:
        """Seconds until the oldest open slice is due by age (None when none is open)."""
        if not self._open:
            return None
        return min(s.opened for s in self._open.values()) + self.slice_seconds - time.monotonic()

    def due(self, force: bool = False) -> list[Slice]:
        """Close and return the slices to profile now: old enough, full, window over, or all (`force`)."""
        now, wall = time.monotonic(), time.time()
        ready = [key for key, s in self._open.items()
                 if force or now - s.opened >= self.slice_seconds or s.rows >= self.slice_rows
                 or (key[2] + 1) * self.window <= wall]
        return [self._open.pop(key) for key in ready]
