"""The monitor's read side: per-window reports (drift, data quality, quality), status, drift history.

Reports are computed from the merged window profiles and the labelled rows and cached
per window until either changes, so a Prometheus scrape or a dashboard refresh reads
cached results instead of recomputing (or querying) per request.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from monitor.compare import DriftPolicy, compare_with_reference
from monitor.data_quality import data_quality
from monitor.ingest import Ingest, Key
from monitor.labels import Labels
from monitor.quality import classification_quality, regression_quality
from monitor.reference import ReferenceStore
from monitor.store import Store, counters, loads
from vigil.config import Settings


class Reports:
    """What GET /v1/status, /v1/drift, /metrics and /report read."""

    def __init__(self, settings: Settings, store: Store, references: ReferenceStore, ingest: Ingest,
                 labels: Labels) -> None:
        self.settings = settings
        self.window = settings.monitor_window_seconds
        self.store = store
        self.references = references
        self.ingest = ingest
        self.labels = labels
        self.started = time.time()
        self._reports: dict[Key, tuple[int, int, dict[str, Any]]] = {}

    def versions(self) -> list[tuple[str, str, str, list[Any]]]:
        rows = self.store.query("SELECT model, version, task, classes FROM versions ORDER BY model, version")
        return [(m, v, t, loads(c) or []) for m, v, t, c in rows]

    def windows(self, model: str, version: str, limit: int = 20) -> list[tuple[int, int]]:
        """(window_start, rows) of the latest `limit` windows, oldest first."""
        rows = self.store.query(
            "SELECT window_start, rows FROM windows WHERE model = ? AND version = ? ORDER BY window_start DESC LIMIT ?",
            (model, version, limit),
        )
        return rows[::-1]

    def window_report(self, model: str, version: str, window_start: int) -> dict[str, Any]:
        """Drift, prediction drift, data quality and label quality of one window."""
        key = (model, version, window_start)
        view = self.ingest.window_view(key)
        labelled = self.store.query(
            "SELECT COUNT(*) FROM labelled WHERE model = ? AND version = ? AND window_start = ?", key)[0][0]
        rows = int(view.get_column(next(iter(view.get_columns()))).to_summary_dict().get("counts/n", 0))
        cached = self._reports.get(key)
        if cached and cached[:2] == (rows, labelled):
            return cached[2]
        ref = self.references.get(model, version)
        verdict = compare_with_reference(ref, view, DriftPolicy.from_settings(self.settings)).to_dict()
        report = {
            "window_start": window_start,
            "window_end": window_start + self.window,
            "rows": rows,
            **verdict,
            "data_quality": data_quality(view, ref),
            "quality": self.quality(model, version, window_start),
        }
        self._reports[key] = (rows, labelled, report)
        return report

    def quality(self, model: str, version: str, window_start: int) -> dict[str, Any]:
        """sklearn metrics over the window's labelled predictions, with the label count."""
        rows = self.store.query(
            "SELECT prediction, scores, label FROM labelled WHERE model = ? AND version = ? AND window_start = ?",
            (model, version, window_start),
        )
        out: dict[str, Any] = {"labels": len(rows)}
        if not rows:
            return out
        task, classes = next(((t, c) for m, v, t, c in self.versions() if (m, v) == (model, version)), ("classification", []))
        preds = [loads(r[0]) for r in rows]
        labels = [loads(r[2]) for r in rows]
        try:
            if task == "classification":
                scores = [loads(r[1]) for r in rows]
                matrix = np.asarray(scores, dtype=float) if all(s is not None for s in scores) else None
                out.update(classification_quality(labels, preds, matrix, classes))
            else:
                out.update(regression_quality(labels, preds))
        except (TypeError, ValueError) as exc:  # e.g. string labels for a regressor
            out["error"] = f"cannot score labels: {exc}"
        return out

    def detections(self, model: str, version: str) -> list[dict[str, Any]]:
        rows = self.store.query(
            "SELECT row_index, ts, window_start FROM detections WHERE model = ? AND version = ? ORDER BY row_index",
            (model, version),
        )
        return [{"row_index": r, "timestamp": t, "window_start": w} for r, t, w in rows]

    def status(self) -> dict[str, Any]:
        """Counts per version, label joins, lag and rejections (GET /v1/status): a few small queries."""
        now = time.time()
        labelled = dict(((m, v), n) for m, v, n in self.store.query(
            "SELECT model, version, COUNT(*) FROM labelled GROUP BY model, version"))
        windows = dict(((m, v), n) for m, v, n in self.store.query(
            "SELECT model, version, COUNT(*) FROM windows GROUP BY model, version"))
        detections = dict(((m, v), n) for m, v, n in self.store.query(
            "SELECT model, version, COUNT(*) FROM detections GROUP BY model, version"))
        out = []
        for model, version, task, profiles, rows, last_ts, last_received, lag in self.store.query(
                "SELECT model, version, task, profiles, rows, last_ts, last_received, last_lag FROM versions"
                " ORDER BY model, version"):
            key = (model, version)
            joined = labelled.get(key, 0)
            out.append({
                "model": model, "version": version, "task": task,
                "profiles_received": self.ingest.received[(model, version, "profiles")],
                "rows_received": self.ingest.received[(model, version, "rows")],
                "profiles_ingested": profiles or 0, "rows_ingested": rows or 0,
                "windows": windows.get(key, 0),
                "labels_joined": joined, "rows_without_label": max(0, (rows or 0) - joined),
                "last_batch_timestamp": last_ts,
                "ingest_lag_seconds": lag,
                "seconds_since_last_batch": now - last_received if last_received else None,
                "concept_drift_detections": detections.get(key, 0),
            })
        totals = counters(self.store)
        waiting = self.store.query("SELECT COUNT(*) FROM pending_labels")[0][0]
        return {
            "versions": out,
            "labels": {
                "received": totals.get("labels_received", 0), "joined": totals.get("labels_joined", 0),
                "arrived_before_prediction": totals.get("labels_pending", 0), "waiting_now": waiting,
                "duplicate": totals.get("labels_duplicate", 0), "expired_unmatched": totals.get("labels_expired", 0),
            },
            "duplicates": totals.get("duplicates", 0),
            "rejected": dict(self.ingest.rejected),
            "window_seconds": self.window,
            "uptime_seconds": now - self.started,
            "state_quarantined": self.store.quarantined,  # non-null: the state file was corrupt at start
            "label_join": {"log": str(self.settings.prediction_log_dir) if self.settings.prediction_log_dir else None,
                           "files_indexed": self.labels.index.files},
        }

    def drift(self, model: str | None = None, version: str | None = None, limit: int = 20) -> dict[str, Any]:
        """GET /v1/drift: per version, the latest window's verdicts plus recent history."""
        result = []
        for m, v, task, _ in self.versions():
            if (model and m != model) or (version and v != version):
                continue
            history = [self.window_report(m, v, start) for start, _ in self.windows(m, v, limit)]
            latest = history[-1] if history else None
            result.append({
                "model": m, "version": v, "task": task,
                "dataset_drift": bool(latest and latest["dataset_drift"]),
                "latest": latest,
                "history": [
                    {"window_start": h["window_start"], "rows": h["rows"], "dataset_drift": h["dataset_drift"],
                     "severity": h["severity"], "drift_share": h["drift_share"],
                     "prediction_drift": bool(h["prediction_drift"] and h["prediction_drift"]["drift"]),
                     "drifted_features": sorted(k for k, f in h["features"].items() if f["drift"]),
                     "minor_features": sorted(k for k, f in h["features"].items() if f["severity"] == "minor"),
                     "quality": h["quality"]}
                    for h in history
                ],
                "concept_drift": self.detections(m, v),
            })
        return {"versions": result}
