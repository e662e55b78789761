"""The monitor's persisted state: one SQLite file under ``<home>/monitor``.

Everything a restart must not lose lives here: seen batch ids, merged window profiles,
per-version ingest totals, labels waiting for their rows, labelled rows, ADWIN states and
detections, label counters. It grows with profiles and labels, never with the rows
served (those are in the prediction log). Each ingest or label join is one transaction,
which is what makes ingestion exactly-once under replays and `kill -9`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import orjson

log = logging.getLogger("vigil.monitor")

SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
  batch_id TEXT PRIMARY KEY, model TEXT, version TEXT, window_start INTEGER,
  rows INTEGER, ts REAL, received_at REAL, producer TEXT);
CREATE INDEX IF NOT EXISTS batches_received ON batches (received_at);
CREATE TABLE IF NOT EXISTS windows (
  model TEXT, version TEXT, window_start INTEGER, rows INTEGER, batches INTEGER,
  profile BLOB, updated_at REAL, PRIMARY KEY (model, version, window_start));
CREATE TABLE IF NOT EXISTS versions (
  model TEXT, version TEXT, task TEXT, classes TEXT, adwin BLOB, errors_seen INTEGER DEFAULT 0,
  profiles INTEGER DEFAULT 0, rows INTEGER DEFAULT 0, last_ts REAL, last_received REAL, last_lag REAL,
  PRIMARY KEY (model, version));
CREATE TABLE IF NOT EXISTS labelled (
  request_id TEXT PRIMARY KEY, model TEXT, version TEXT, window_start INTEGER, ts REAL,
  prediction TEXT, scores TEXT, label TEXT, labelled_at REAL);
CREATE INDEX IF NOT EXISTS labelled_window ON labelled (model, version, window_start);
CREATE INDEX IF NOT EXISTS labelled_ts ON labelled (ts);
CREATE TABLE IF NOT EXISTS pending_labels (request_id TEXT PRIMARY KEY, label TEXT, received_at REAL);
CREATE TABLE IF NOT EXISTS detections (
  model TEXT, version TEXT, row_index INTEGER, ts REAL, window_start INTEGER);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER);
CREATE TABLE IF NOT EXISTS label_business (
  request_id TEXT PRIMARY KEY, outcome INTEGER, value REAL, received_at REAL);
"""
# Per-version ingest totals that older state files lack (added without losing anything).
_VERSION_COLUMNS = {"profiles": "INTEGER DEFAULT 0", "rows": "INTEGER DEFAULT 0", "last_ts": "REAL",
                    "last_received": "REAL", "last_lag": "REAL"}


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a state file written by an older monitor to this schema.

    Contract v1 kept every served row in `predictions`; only the labelled ones still
    matter (quality, ADWIN, KPIs), so they move to `labelled` and the rest goes. Ingest
    totals per version, once summed from `batches` on every read, become columns.
    """
    have = {row[1] for row in conn.execute("PRAGMA table_info(versions)")}
    for column, kind in _VERSION_COLUMNS.items():
        if column not in have:
            conn.execute(f"ALTER TABLE versions ADD COLUMN {column} {kind}")
    if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'predictions'").fetchone():
        conn.execute("INSERT OR IGNORE INTO labelled SELECT request_id, model, version, window_start, ts, prediction,"
                     " scores, label, labelled_at FROM predictions WHERE label IS NOT NULL")
        conn.execute("DROP TABLE predictions")
    if "profiles" not in have:
        conn.execute("UPDATE versions SET profiles = (SELECT COUNT(*) FROM batches b WHERE b.model = versions.model"
                     " AND b.version = versions.version), rows = (SELECT COALESCE(SUM(rows), 0) FROM batches b"
                     " WHERE b.model = versions.model AND b.version = versions.version), last_ts = (SELECT MAX(ts)"
                     " FROM batches b WHERE b.model = versions.model AND b.version = versions.version)")


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def loads(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


class Store:
    """A serialised connection to the monitor database (one writer at a time)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.quarantined: dict[str, Any] | None = None  # set when a corrupt file was moved aside
        try:
            self.conn = self._open(path)
        except sqlite3.DatabaseError as exc:
            # A monitor that refuses to start loses every profile from now on; one that starts
            # afresh loses only the (unreadable anyway) history, kept aside for forensics.
            self.quarantined = quarantine(path, exc)
            self.conn = self._open(path)
        self.lock = threading.RLock()

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process kill
            conn.executescript(SCHEMA)
            _migrate(conn)
            problem = conn.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {problem}")
        except BaseException:
            conn.close()
            raise
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT under the lock; ROLLBACK on any exception."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self.lock:
            self.conn.close()


def quarantine(path: Path, exc: Exception) -> dict[str, Any]:
    """Move a corrupt database (and its WAL/SHM files) aside under a timestamped name."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    moved = path.with_name(f"{path.name}.corrupt-{stamp}-{os.getpid()}")
    for suffix in ("", "-wal", "-shm"):
        source = Path(f"{path}{suffix}")
        if source.exists():
            os.replace(source, Path(f"{moved}{suffix}"))
    log.error("monitor state %s is corrupt (%s); moved it to %s and started with empty state", path, exc, moved)
    return {"path": str(moved), "reason": str(exc), "at": time.time()}


def bump(conn: sqlite3.Connection, name: str, by: int = 1) -> None:
    if by:
        conn.execute(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + ?",
            (name, by, by),
        )


def counters(store: Store) -> dict[str, int]:
    return dict(store.query("SELECT name, value FROM counters"))
