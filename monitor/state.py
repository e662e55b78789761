"""The monitor's core: ingest batches, join labels, compute drift and quality per window.

Windows are tumbling in event time (the batch's serve timestamp), so a batch replayed
from a producer's spool minutes later still lands in the window it was served in.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from typing import Any

import numpy as np

from monitor import drift as dm
from monitor.data_quality import data_quality
from monitor.quality import ConceptDrift, classification_quality, regression_quality, row_error
from monitor.reference import ReferenceStore, UnknownModel
from monitor.store import Store, bump, counters, dumps, loads
from monitor.wire import LabelRecord, ProfileMessage, WireError, parse, parse_label_records
from vigil.config import Settings
from vigil.whylogs_compat import deserialize, merge

Key = tuple[str, str, int]  # model, version, window_start
_VIEW_CACHE = 64


class Monitor:
    """All monitor state behind the HTTP endpoints; safe to call from several threads."""

    def __init__(self, settings: Settings, references: ReferenceStore | None = None) -> None:
        self.settings = settings
        self.window = settings.monitor_window_seconds
        self.store = Store(settings.monitor_home / "monitor.db")
        self.references = references or ReferenceStore(settings)
        self._views: OrderedDict[Key, Any] = OrderedDict()
        self._reports: dict[Key, tuple[int, int, dict[str, Any]]] = {}
        self._adwin: dict[tuple[str, str], ConceptDrift] = {}
        self.received: Counter[tuple[str, str, str]] = Counter()  # (model, version, what)
        self.rejected: Counter[str] = Counter()
        self.started = time.time()

    # -- ingest --------------------------------------------------------------------
    def ingest(self, body: bytes) -> dict[str, Any]:
        """Store one producer message exactly once; raises WireError for bad input."""
        try:
            msg = parse(body)
            view = self._profile_of(msg)
        except WireError as exc:
            self.rejected[exc.reason] += 1
            raise
        self.received[(msg.model, msg.version, "profiles")] += 1
        self.received[(msg.model, msg.version, "rows")] += msg.rows
        key = (msg.model, msg.version, int(msg.timestamp // self.window) * self.window)
        with self.store.transaction() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (msg.batch_id, msg.model, msg.version, key[2], msg.rows, msg.timestamp, time.time(), msg.producer),
            ).rowcount
            if not inserted:
                bump(conn, "duplicates")
                return {"status": "duplicate", "batch_id": msg.batch_id}
            conn.execute(
                "INSERT OR IGNORE INTO versions (model, version, task, classes) VALUES (?, ?, ?, ?)",
                (msg.model, msg.version, msg.task, dumps(msg.classes)),
            )
            merged = merge(self._window_view(key), view)
            conn.execute(
                "INSERT INTO windows VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (model, version, window_start) DO UPDATE"
                " SET rows = rows + excluded.rows, batches = batches + 1, profile = excluded.profile,"
                " updated_at = excluded.updated_at",
                (*key, msg.rows, merged.serialize(), time.time()),
            )
            self._store_predictions(conn, msg, key[2])
        self._views[key] = merged
        self._views.move_to_end(key)
        while len(self._views) > _VIEW_CACHE:
            self._views.popitem(last=False)
        return {"status": "ingested", "batch_id": msg.batch_id}

    def _profile_of(self, msg: ProfileMessage) -> Any:
        try:
            view = deserialize(msg.profile) if msg.profile else None
        except ValueError as exc:  # not a whylogs profile: the sender's error, a 400
            raise WireError(400, "malformed", f"profile: {exc}") from None
        if view is None:
            raise WireError(400, "malformed", "profile is empty")
        try:
            ref = self.references.get(msg.model, msg.version)
        except UnknownModel as exc:
            raise WireError(404, "unknown_model", str(exc)) from None
        except ValueError as exc:  # a reference that exists but is unusable
            raise WireError(404, "unknown_model", f"reference of {msg.model}/{msg.version}: {exc}") from None
        if ref.task != msg.task:
            raise WireError(400, "schema", f"{msg.model}/{msg.version} is a {ref.task} model, message says {msg.task}")
        return view

    def _window_view(self, key: Key) -> Any:
        if key in self._views:
            return self._views[key]
        rows = self.store.query(
            "SELECT profile FROM windows WHERE model = ? AND version = ? AND window_start = ?", key
        )
        view = deserialize(rows[0][0]) if rows else None
        if view is not None:
            self._views[key] = view
        return view

    def _store_predictions(self, conn: Any, msg: ProfileMessage, window_start: int) -> None:
        scores = msg.scores or [None] * msg.rows
        conn.executemany(
            "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
            [
                (rid, msg.model, msg.version, window_start, msg.timestamp, dumps(p), dumps(s))
                for rid, p, s in zip(msg.request_ids, msg.predictions, scores)
            ],
        )
        # Labels that arrived first are waiting: join them now.
        ids = msg.request_ids
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            early = conn.execute(f"SELECT request_id, label FROM pending_labels WHERE request_id IN ({marks})", chunk)
            pairs = [(rid, loads(label)) for rid, label in early.fetchall()]
            if pairs:
                conn.execute(f"DELETE FROM pending_labels WHERE request_id IN ({marks})", chunk)
                self._join(conn, pairs)

    # -- labels --------------------------------------------------------------------
    def post_labels(self, body: bytes) -> dict[str, int]:
        """Join labels with stored predictions; unmatched ones wait (and are counted)."""
        try:
            records = parse_label_records(body)
        except WireError as exc:
            self.rejected[exc.reason] += 1
            raise
        # The prediction log first: a failure there answers 500 and the client resends,
        # so the log gets every label at least once (its view keeps the latest per id).
        self._log_labels(records)
        pairs = [(r.request_id, r.label) for r in records]
        with self.store.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO label_business VALUES (?, ?, ?, ?)",
                [(r.request_id, None if r.outcome is None else int(r.outcome), r.value, time.time())
                 for r in records if r.outcome is not None or r.value is not None],
            )
            bump(conn, "labels_received", len(pairs))
            result = self._join(conn, pairs)
            result["received"] = len(pairs)
        return result

    def _log_labels(self, records: list[LabelRecord]) -> None:
        root = self.settings.prediction_log_dir
        if root is None or not records:
            return
        from vigil.predlog.writer import append_labels

        append_labels(root, [{"request_id": r.request_id, "label": r.label, "outcome": r.outcome, "value": r.value}
                             for r in records])

    def _join(self, conn: Any, pairs: list[tuple[str, Any]]) -> dict[str, int]:
        joined = pending = duplicate = 0
        touched: set[tuple[str, str]] = set()
        now = time.time()
        try:
            for rid, label in pairs:
                row = conn.execute(
                    "SELECT model, version, prediction, label, ts, window_start FROM predictions WHERE request_id = ?",
                    (rid,),
                ).fetchone()
                if row is None:
                    conn.execute("INSERT OR REPLACE INTO pending_labels VALUES (?, ?, ?)", (rid, dumps(label), now))
                    pending += 1
                elif row[3] is not None:
                    duplicate += 1
                else:
                    conn.execute("UPDATE predictions SET label = ?, labelled_at = ? WHERE request_id = ?", (dumps(label), now, rid))
                    joined += 1
                    self._feed_adwin(conn, row, label)
                    touched.add((row[0], row[1]))
            for model, version in touched:
                detector = self._adwin[(model, version)]
                conn.execute(
                    "UPDATE versions SET adwin = ?, errors_seen = ? WHERE model = ? AND version = ?",
                    (detector.state(), detector.seen, model, version),
                )
        except BaseException:
            self._adwin.clear()  # the transaction rolls back: reload detectors from disk
            raise
        bump(conn, "labels_joined", joined)
        bump(conn, "labels_pending", pending)
        bump(conn, "labels_duplicate", duplicate)
        return {"joined": joined, "pending": pending, "duplicate": duplicate}

    def _feed_adwin(self, conn: Any, row: tuple, label: Any) -> None:
        model, version, prediction, _, ts, window_start = row
        key = (model, version)
        if key not in self._adwin:
            state = conn.execute("SELECT adwin, errors_seen FROM versions WHERE model = ? AND version = ?", key).fetchone()
            self._adwin[key] = ConceptDrift(state[0] if state else None, state[1] if state else 0)
        task = conn.execute("SELECT task FROM versions WHERE model = ? AND version = ?", key).fetchone()[0]
        detector = self._adwin[key]
        try:
            error = row_error(task, label, loads(prediction))
        except (TypeError, ValueError):  # a non-numeric label for a regressor
            return
        if detector.update(error):
            conn.execute("INSERT INTO detections VALUES (?, ?, ?, ?, ?)", (model, version, detector.seen, ts, window_start))

    def expire(self, now: float | None = None) -> int:
        """Drop predictions and waiting labels past the retention; count unmatched labels."""
        cutoff = (now or time.time()) - self.settings.monitor_retention_seconds
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM predictions WHERE ts < ?", (cutoff,))
            expired = conn.execute("DELETE FROM pending_labels WHERE received_at < ?", (cutoff,)).rowcount
            conn.execute("DELETE FROM label_business WHERE received_at < ?", (cutoff,))
            bump(conn, "labels_expired", expired)
        self._maintain_log()
        return expired

    def _maintain_log(self) -> None:
        """Retention + compaction of the prediction log's labels (the monitor writes them)."""
        root = self.settings.prediction_log_dir
        if root is None:
            return
        from vigil.predlog import files

        try:
            files.maintain(root, files.LABELS, self.settings.prediction_log_retention_days)
        except Exception as exc:  # housekeeping must never take the monitor down
            import logging

            logging.getLogger("vigil.monitor").warning("prediction log maintenance failed: %s", exc)

    # -- read side -----------------------------------------------------------------
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
        view = self._window_view(key)
        labelled = self.store.query(
            "SELECT COUNT(*) FROM predictions WHERE model = ? AND version = ? AND window_start = ? AND label IS NOT NULL", key
        )[0][0]
        rows = int(view.get_column(next(iter(view.get_columns()))).to_summary_dict().get("counts/n", 0))
        cached = self._reports.get(key)
        if cached and cached[:2] == (rows, labelled):
            return cached[2]
        ref = self.references.get(model, version)
        ref_view, alpha = ref.profile(), self.settings.monitor_drift_alpha
        features = [dm.column_drift(ref_view, view, f, f in ref.categorical, alpha) for f in ref.features]
        features = [f for f in features if f is not None]
        verdict, share = dm.dataset_drift(features, self.settings.monitor_drift_share)
        pred = dm.column_drift(ref_view, view, "prediction", ref.task == "classification", alpha)
        report = {
            "window_start": window_start,
            "window_end": window_start + self.window,
            "rows": rows,
            "dataset_drift": verdict,
            "drift_share": share,
            "features": {f.column: f.to_dict() for f in features},
            "prediction_drift": pred.to_dict() if pred else None,
            "data_quality": data_quality(view, ref),
            "quality": self.quality(model, version, window_start),
        }
        self._reports[key] = (rows, labelled, report)
        return report

    def quality(self, model: str, version: str, window_start: int) -> dict[str, Any]:
        """sklearn metrics over the window's labelled predictions, with the label count."""
        rows = self.store.query(
            "SELECT prediction, scores, label FROM predictions"
            " WHERE model = ? AND version = ? AND window_start = ? AND label IS NOT NULL",
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
        """Counts per version, label joins, lag and rejections (GET /v1/status)."""
        now = time.time()
        out = []
        for model, version, task, _ in self.versions():
            batches = self.store.query(
                "SELECT COUNT(*), COALESCE(SUM(rows), 0), MAX(ts), MAX(received_at) FROM batches WHERE model = ? AND version = ?",
                (model, version),
            )[0]
            last = self.store.query(
                "SELECT received_at - ts FROM batches WHERE model = ? AND version = ? ORDER BY received_at DESC LIMIT 1",
                (model, version),
            )
            joined, waiting = self.store.query(
                "SELECT COUNT(label), COUNT(*) - COUNT(label) FROM predictions WHERE model = ? AND version = ?",
                (model, version),
            )[0]
            out.append({
                "model": model, "version": version, "task": task,
                "profiles_received": self.received[(model, version, "profiles")],
                "rows_received": self.received[(model, version, "rows")],
                "profiles_ingested": batches[0], "rows_ingested": batches[1],
                "windows": self.store.query("SELECT COUNT(*) FROM windows WHERE model = ? AND version = ?", (model, version))[0][0],
                "labels_joined": joined, "predictions_awaiting_label": waiting,
                "last_batch_timestamp": batches[2],
                "ingest_lag_seconds": last[0][0] if last else None,
                "seconds_since_last_batch": now - batches[3] if batches[3] else None,
                "concept_drift_detections": len(self.detections(model, version)),
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
            "rejected": dict(self.rejected),
            "window_seconds": self.window,
            "uptime_seconds": now - self.started,
            "state_quarantined": self.store.quarantined,  # non-null: the state file was corrupt at start
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
                     "drift_share": h["drift_share"],
                     "prediction_drift": bool(h["prediction_drift"] and h["prediction_drift"]["drift"]),
                     "drifted_features": sorted(k for k, f in h["features"].items() if f["drift"]),
                     "quality": h["quality"]}
                    for h in history
                ],
                "concept_drift": self.detections(m, v),
            })
        return {"versions": result}
