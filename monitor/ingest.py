"""Ingest: one producer message in, exactly once, merged into its version's window.

A message is a profile of served rows (contract v2: about a second of one model version
on one producer). Its batch id, the merged window profile and the version's totals are
written in one SQLite transaction, so a replay after a crash is recognised and answered
"duplicate". The work is per message (parse, deserialize, merge, store), never per row.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from typing import Any

from monitor.reference import ReferenceStore, UnknownModel
from monitor.store import Store, bump, dumps
from monitor.wire import ProfileMessage, WireError, parse
from vigil.whylogs_compat import deserialize, merge

Key = tuple[str, str, int]  # model, version, window_start
_VIEW_CACHE = 64  # window profiles kept deserialized: the recent windows of the live versions


class Ingest:
    """Parses, checks and stores profile messages; keeps the recent window views in memory."""

    def __init__(self, store: Store, references: ReferenceStore, window_seconds: int) -> None:
        self.store = store
        self.references = references
        self.window = window_seconds
        self._views: OrderedDict[Key, Any] = OrderedDict()
        self.received: Counter[tuple[str, str, str]] = Counter()  # (model, version, "profiles"|"rows"), replays too
        self.rejected: Counter[str] = Counter()
        self.changes = 0  # bumped on every stored message: readers cache what they computed from it

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
        now = time.time()
        with self.store.transaction() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (msg.batch_id, msg.model, msg.version, key[2], msg.rows, msg.timestamp, now, msg.producer),
            ).rowcount
            if not inserted:
                bump(conn, "duplicates")
                return {"status": "duplicate", "batch_id": msg.batch_id}
            conn.execute("INSERT OR IGNORE INTO versions (model, version, task, classes) VALUES (?, ?, ?, ?)",
                         (msg.model, msg.version, msg.task, dumps(msg.classes)))
            conn.execute("UPDATE versions SET profiles = profiles + 1, rows = rows + ?, last_ts = MAX(COALESCE(last_ts, 0), ?),"
                         " last_received = ?, last_lag = ? WHERE model = ? AND version = ?",
                         (msg.rows, msg.timestamp, now, now - msg.timestamp, msg.model, msg.version))
            merged = merge(self.window_view(key), view)
            conn.execute(
                "INSERT INTO windows VALUES (?, ?, ?, ?, 1, ?, ?) ON CONFLICT (model, version, window_start) DO UPDATE"
                " SET rows = rows + excluded.rows, batches = batches + 1, profile = excluded.profile,"
                " updated_at = excluded.updated_at",
                (*key, msg.rows, merged.serialize(), now),
            )
            # Under the store's lock, like every other use of the view cache.
            self._remember(key, merged)
            self.changes += 1
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

    def window_view(self, key: Key) -> Any:
        """The merged profile of one window (None when the window has no rows)."""
        with self.store.lock:
            if key in self._views:
                return self._views[key]
            rows = self.store.query("SELECT profile FROM windows WHERE model = ? AND version = ? AND window_start = ?", key)
            view = deserialize(rows[0][0]) if rows else None
            if view is not None:
                self._remember(key, view)
            return view

    def _remember(self, key: Key, view: Any) -> None:
        self._views[key] = view
        self._views.move_to_end(key)
        while len(self._views) > _VIEW_CACHE:
            self._views.popitem(last=False)
