"""Late labels: joined with the served rows in the prediction log, then quality and ADWIN.

Labels (`POST /v1/labels`) are written to the prediction log's labels partition first (a
failed write answers 500 and the client resends), then wait in `pending_labels` until the
row they name is found: at once, when its row was flushed already, or on the join pass
that indexes the file holding it (every `JOIN_EVERY_S`). A joined row goes to `labelled`
with its prediction, probabilities and label, and feeds its version's ADWIN detector, in
one transaction. The join reads only the row groups whose id range can hold a waiting
label (monitor/row_index.py), so the monitor's work follows labels and files, not rows.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterable

from monitor.quality import ConceptDrift, row_error
from monitor.row_index import RowGroup, RowIndex, ServedRow
from monitor.store import Store, bump, dumps, loads
from monitor.wire import LabelRecord, WireError, parse_label_records
from vigil.config import Settings

log = logging.getLogger("vigil.monitor")
JOIN_EVERY_S = 1.0
_CHUNK = 500  # ids per SQL IN (...)


class Labels:
    """Receives labels and joins them with the logged rows they name."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.window = settings.monitor_window_seconds
        self.index = RowIndex(settings.prediction_log_dir, settings.monitor_retention_seconds)
        self._adwin: dict[tuple[str, str], ConceptDrift] = {}
        self._lock = threading.Lock()  # one join at a time: a POST's and the background pass's
        self.changes = 0  # bumped on every join: readers cache what they computed from it

    # -- POST /v1/labels -------------------------------------------------------------
    def post(self, body: bytes) -> dict[str, int]:
        """Store labels and join those whose rows are logged already; the rest wait (counted)."""
        records = parse_label_records(body)
        self._log_labels(records)
        now = time.time()
        latest = {r.request_id: r for r in records}  # the same id twice in one post: the last wins
        with self._lock:
            with self.store.transaction() as conn:
                conn.executemany(
                    "INSERT OR REPLACE INTO label_business VALUES (?, ?, ?, ?)",
                    [(r.request_id, None if r.outcome is None else int(r.outcome), r.value, now)
                     for r in records if r.outcome is not None or r.value is not None])
                done = _existing(conn, "labelled", list(latest))
                fresh = [r for rid, r in latest.items() if rid not in done]
                conn.executemany("INSERT OR REPLACE INTO pending_labels VALUES (?, ?, ?)",
                                 [(r.request_id, dumps(r.label), now) for r in fresh])
                bump(conn, "labels_received", len(records))
                bump(conn, "labels_duplicate", len(records) - len(fresh))
            joined = self._join_pending(extra=[r.request_id for r in fresh])
        found = sum(1 for r in fresh if r.request_id in joined)
        with self.store.transaction() as conn:
            bump(conn, "labels_pending", len(fresh) - found)  # arrived before their row was logged
        return {"received": len(records), "joined": found, "pending": len(fresh) - found,
                "duplicate": len(records) - len(fresh)}

    def _log_labels(self, records: list[LabelRecord]) -> None:
        root = self.settings.prediction_log_dir
        if root is None or not records:
            return
        from vigil.predlog.writer import append_labels

        append_labels(root, [{"request_id": r.request_id, "label": r.label, "outcome": r.outcome, "value": r.value}
                             for r in records])

    # -- the join --------------------------------------------------------------------
    def join_pass(self) -> int:
        """Index the rows files written since the last pass and join the labels they answer."""
        with self._lock:
            return len(self._join_pending())

    def _join_pending(self, extra: Iterable[str] = ()) -> set[str]:
        """Join waiting labels with new files, and the `extra` ids with every file; the ids joined."""
        new = self.index.refresh()
        extra = list(extra)
        rows: dict[str, ServedRow] = {}
        if extra:
            rows.update((r.request_id, r) for r in self.index.find(extra))
        if new:
            waiting = [rid for (rid,) in self.store.query("SELECT request_id FROM pending_labels")]
            rows.update((r.request_id, r) for r in self.index.find(waiting, within=new))
        if not rows:
            return set()
        return self._record(list(rows.values()))

    def _record(self, rows: list[ServedRow]) -> set[str]:
        """Move the labels of `rows` from pending to labelled and feed ADWIN, in one transaction."""
        now = time.time()
        joined: set[str] = set()
        touched: set[tuple[str, str]] = set()
        with self.store.transaction() as conn:
            try:
                for start in range(0, len(rows), _CHUNK):
                    chunk = rows[start:start + _CHUNK]
                    labels = dict(_select(conn, "SELECT request_id, label FROM pending_labels", [r.request_id for r in chunk]))
                    for row in chunk:
                        if row.request_id not in labels:
                            continue  # joined by a concurrent post, or expired meanwhile
                        label = loads(labels[row.request_id])
                        window_start = int(row.served_at // self.window) * self.window
                        scores = list(row.probabilities.values()) or None
                        conn.execute("INSERT OR IGNORE INTO labelled VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                     (row.request_id, row.model, row.version, window_start, row.served_at,
                                      dumps(row.prediction), dumps(scores), dumps(label), now))
                        conn.execute("DELETE FROM pending_labels WHERE request_id = ?", (row.request_id,))
                        self._feed_adwin(conn, row, label, window_start)
                        joined.add(row.request_id)
                        touched.add((row.model, row.version))
                for model, version in touched:
                    detector = self._adwin[(model, version)]
                    conn.execute("UPDATE versions SET adwin = ?, errors_seen = ? WHERE model = ? AND version = ?",
                                 (detector.state(), detector.seen, model, version))
                bump(conn, "labels_joined", len(joined))
            except BaseException:
                self._adwin.clear()  # the transaction rolls back: detectors reload from disk
                raise
        if joined:
            self.changes += 1
        return joined

    def _feed_adwin(self, conn: Any, row: ServedRow, label: Any, window_start: int) -> None:
        key = (row.model, row.version)
        found = conn.execute("SELECT task, adwin, errors_seen FROM versions WHERE model = ? AND version = ?", key).fetchone()
        if found is None:  # its profiles have not arrived (or the profile stream is off): the log says enough
            classes = [_class(name.removeprefix("proba_")) for name in row.probabilities]
            conn.execute("INSERT OR IGNORE INTO versions (model, version, task, classes) VALUES (?, ?, ?, ?)",
                         (*key, row.task, dumps(classes)))
            found = conn.execute("SELECT task, adwin, errors_seen FROM versions WHERE model = ? AND version = ?", key).fetchone()
        if key not in self._adwin:
            self._adwin[key] = ConceptDrift(found[1], found[2] or 0)
        try:
            error = row_error(found[0], label, row.prediction)
        except (TypeError, ValueError):  # a non-numeric label for a regressor
            return
        detector = self._adwin[key]
        if detector.update(error):
            conn.execute("INSERT INTO detections VALUES (?, ?, ?, ?, ?)",
                         (row.model, row.version, detector.seen, row.served_at, window_start))

    # -- housekeeping ------------------------------------------------------------------
    def expire(self, now: float | None = None) -> int:
        """Drop waiting labels, labelled rows and seen batch ids past the retention; count unmatched labels."""
        cutoff = (now or time.time()) - self.settings.monitor_retention_seconds
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM labelled WHERE ts < ?", (cutoff,))
            conn.execute("DELETE FROM batches WHERE received_at < ?", (cutoff,))
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
            log.warning("prediction log maintenance failed: %s", exc)


def _class(text: str) -> Any:
    """A class name from a `proba_<class>` column: the number it was, else the text."""
    try:
        return int(text)
    except ValueError:
        return text


def _select(conn: Any, sql: str, ids: list[str]) -> list[tuple]:
    out: list[tuple] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        out += conn.execute(f"{sql} WHERE request_id IN ({','.join('?' * len(chunk))})", chunk).fetchall()
    return out


def _existing(conn: Any, table: str, ids: list[str]) -> set[str]:
    return {rid for (rid,) in _select(conn, f"SELECT request_id FROM {table}", ids)}


__all__ = ["JOIN_EVERY_S", "Labels", "RowGroup", "WireError"]
