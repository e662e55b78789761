"""The monitor as the pipeline it is: ingest -> windows -> compare -> labels and quality -> export.

    ingest.py      producer messages in, exactly once, merged into their window's profile
    drift.py,      a window's profile against the version's training reference: per-column
    compare.py,    statistics and severity, the importance-weighted verdict (offline.py runs
    data_quality.py  the same comparison on files, for `vigil drift`)
    labels.py      late labels joined with the served rows in the prediction log; ADWIN
    reports.py     per-window reports (cached), status, drift history
    metrics.py, report.py, server.py   Prometheus, the HTML report, the HTTP routes

Windows are tumbling in event time (the profile's serve timestamp), so a profile
replayed from a producer's spool minutes later still lands in the window it was served in.
`Monitor` holds the parts together behind the HTTP endpoints; it is safe to call from
several threads.
"""

from __future__ import annotations

import time
from typing import Any

from monitor.ingest import Ingest
from monitor.labels import Labels
from monitor.reference import ReferenceStore
from monitor.reports import Reports
from monitor.store import Store
from monitor.wire import WireError
from vigil.config import Settings


class Monitor:
    """The monitor's state and the operations the endpoints call."""

    def __init__(self, settings: Settings, references: ReferenceStore | None = None) -> None:
        self.settings = settings
        self.window = settings.monitor_window_seconds
        self.store = Store(settings.monitor_home / "monitor.db")
        self.references = references or ReferenceStore(settings)
        self.intake = Ingest(self.store, self.references, self.window)
        self.labels = Labels(settings, self.store)
        self.reports = Reports(settings, self.store, self.references, self.intake, self.labels)

    @property
    def rejected(self) -> Any:
        """4xx refusals by reason (counted where they happen, read by status and /metrics)."""
        return self.intake.rejected

    @property
    def started(self) -> float:
        return self.reports.started

    # -- write side ----------------------------------------------------------------
    def ingest(self, body: bytes) -> dict[str, Any]:
        """POST /v1/profiles: one producer message, exactly once."""
        return self.intake.ingest(body)

    def post_labels(self, body: bytes) -> dict[str, int]:
        """POST /v1/labels: store labels, join those whose rows are logged."""
        try:
            return self.labels.post(body)
        except WireError as exc:
            self.rejected[exc.reason] += 1
            raise

    def join_labels(self) -> int:
        """One pass of the label join over the prediction log's new files (the server runs it every second)."""
        return self.labels.join_pass()

    def expire(self, now: float | None = None) -> int:
        """Housekeeping: retention of labels, labelled rows and seen batch ids."""
        return self.labels.expire(now or time.time())

    # -- read side -----------------------------------------------------------------
    def versions(self) -> list[tuple[str, str, str, list[Any]]]:
        return self.reports.versions()

    def windows(self, model: str, version: str, limit: int = 20) -> list[tuple[int, int]]:
        return self.reports.windows(model, version, limit)

    def window_view(self, model: str, version: str, window_start: int) -> Any:
        """The merged profile of one window (None when it has no rows)."""
        return self.intake.window_view((model, version, window_start))

    def window_report(self, model: str, version: str, window_start: int) -> dict[str, Any]:
        return self.reports.window_report(model, version, window_start)

    def quality(self, model: str, version: str, window_start: int) -> dict[str, Any]:
        return self.reports.quality(model, version, window_start)

    def detections(self, model: str, version: str) -> list[dict[str, Any]]:
        return self.reports.detections(model, version)

    def status(self) -> dict[str, Any]:
        return self.reports.status()

    def drift(self, model: str | None = None, version: str | None = None, limit: int = 20) -> dict[str, Any]:
        return self.reports.drift(model, version, limit)
