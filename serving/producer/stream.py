"""Stream whylogs profiles of the served rows to the monitor, off the request path.

`ProfileStreamer.submit` only appends a batch's arrays to its slice (slices.py:
references, microseconds). A background thread profiles each slice when it is due,
builds the contract-v2 message (message.py) and POSTs it. When the monitor is slow,
down or restarting, messages go to a size-capped on-disk spool and are replayed in order
when it answers again; only a full queue or a full spool drops a batch, and every drop is
counted. Nothing here ever raises into the caller.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Literal

from vigil.auth import auth_headers
from vigil.config import Settings
from serving.producer.message import PROFILES_PATH
from serving.producer.slices import Slice, Slicer
from serving.producer.spool import Spool
from vigil.served_batch import ServedBatch

log = logging.getLogger(__name__)

Outcome = Literal["ok", "retry", "rejected"]
_RETRYABLE_STATUS = {408, 429}
# A missing or wrong API token is a configuration problem, not a bad profile: keep the
# profile (spool, retry) until the token is fixed instead of dropping it.
_AUTH_STATUS = {401, 403}
_AUTH_LOG_EVERY_S = 60.0
# How often the sender looks for due slices and the spool: when the oldest open slice is due,
# and at least every quarter slice (at most 250 ms: row caps, window ends, the spool). A look
# costs ~0.25 ms (a spool listing, a gauge write, the wake-up): at the fixed 50 ms it used to
# be, an idle agent spent 6 ms of CPU a second on it, measured (1-2 ms now). flush() and
# close() wake it at once.
_TICK_MAX_S, _TICK_MIN_S = 0.25, 0.01
_REPLAY_CHUNK = 64  # files per replay pass, so fresh batches are not starved
_BACKOFF_MIN_S, _BACKOFF_MAX_S = 0.2, 5.0


class StreamMetrics:
    """Prometheus metrics of the producer, created once per registry."""

    _by_registry: dict[int, "StreamMetrics"] = {}

    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        kw = {"registry": registry}
        self.sent = Counter("vigil_profiles_sent_total", "Profiles delivered to the monitor on first try", **kw)
        self.spooled = Counter("vigil_profiles_spooled_total", "Profiles written to the on-disk spool", **kw)
        self.replayed = Counter("vigil_profiles_replayed_total", "Spooled profiles delivered later", **kw)
        self.dropped = Counter(
            "vigil_profiles_dropped_total", "Profiles lost (spool_full, rejected, error)", ["reason"], **kw
        )
        self.unauthorized = Counter(
            "vigil_profiles_unauthorized_total",
            "Deliveries the monitor refused (401/403) for a missing or wrong API token; the profile is kept", **kw
        )
        self.spool_bytes = Gauge(
            "vigil_profile_spool_bytes", "Bytes waiting in the profile spool", multiprocess_mode="livemax", **kw
        )
        self.latency = Histogram(
            "vigil_profile_send_latency_seconds",
            "Time to POST one profile to the monitor",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            **kw,
        )

    @classmethod
    def for_registry(cls, registry: Any) -> "StreamMetrics":
        if registry is None:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        if id(registry) not in cls._by_registry:
            cls._by_registry[id(registry)] = cls(registry)
        return cls._by_registry[id(registry)]


class ProfileStreamer:
    """Slices served batches, profiles each slice and delivers it to the monitor, in one background thread."""

    def __init__(self, settings: Settings, registry: Any = None) -> None:
        self.settings = settings
        self.url = settings.monitor_url.rstrip("/") + PROFILES_PATH
        self.enabled = settings.profile_stream
        self._slicer = Slicer(settings.monitor_window_seconds, settings.profile_slice_seconds,
                              settings.profile_slice_rows)
        self._slices_lock = threading.Lock()  # submit (the agent's loop) and the sender thread
        self._metrics = StreamMetrics.for_registry(registry)
        self._counts = {"sent": 0, "spooled": 0, "replayed": 0, "spool_full": 0, "rejected": 0, "error": 0,
                        "unauthorized": 0, "rows_profiled": 0}
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._stop = threading.Event()
        self._flush_requested = threading.Event()
        self._wake = threading.Event()  # set by flush() and close(): look now, not at the next tick
        self._tick_s = min(_TICK_MAX_S, max(_TICK_MIN_S, settings.profile_slice_seconds / 4))
        self._busy = False
        self._spool: Spool | None = None
        self._backoff = _BACKOFF_MIN_S
        self._next_replay = 0.0
        self._tls_warned = False
        self._headers = {"Content-Type": "application/json", **auth_headers(settings)}
        self._auth_logged_at = -_AUTH_LOG_EVERY_S
        self.producer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    # -- caller side -------------------------------------------------------------------
    def submit(self, batch: ServedBatch) -> bool:
        """Add a batch's rows to their slice (references only, microseconds); never raises, never waits."""
        if not self.enabled:
            return False
        if self._thread is None or self._pid != os.getpid():
            self._start()
        try:
            with self._slices_lock:
                self._slicer.add(batch)
        except Exception as exc:  # a malformed batch must not stop the caller
            log.warning("cannot profile batch %s: %s", batch.batch_id, exc)
            self._drop("error")
            return False
        return True

    def start(self) -> None:
        """Start the sender thread now (e.g. at agent startup) instead of on the first submit."""
        if self.enabled and (self._thread is None or self._pid != os.getpid()):
            self._start()

    def stats(self) -> dict[str, int]:
        """Counters since start: sent, spooled, replayed, drops by reason, rows profiled; spool bytes."""
        out = dict(self._counts)
        out["spool_bytes"] = self._spool.bytes if self._spool else 0
        with self._slices_lock:
            out["rows_open"] = self._slicer.rows
        return out

    def flush(self, timeout: float = 10.0) -> bool:
        """Profile every open slice now and wait until all is delivered (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        self._flush_requested.set()
        self._wake.set()
        while time.monotonic() < deadline:
            with self._slices_lock:
                open_rows = self._slicer.rows
            if not open_rows and not self._busy and not self._flush_requested.is_set() \
                    and (self._spool is None or not self._spool.files()):
                return True
            if not open_rows:
                self._next_replay = 0.0  # the caller is waiting: retry the spool now
                self._wake.set()
            time.sleep(0.02)
        return False

    def close(self, timeout: float = 5.0) -> None:
        """Stop: open slices are profiled and sent if possible, else spooled."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        if self._spool is not None:
            self._spool.unlock()

    # -- sender thread ---------------------------------------------------------------
    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None and self._pid == os.getpid():
                return
            import requests

            self._pid = os.getpid()  # after a fork the parent's thread does not exist here
            self._session = requests.Session()
            self._spool = Spool(self.settings.spool_dir, self.settings.profile_spool_bytes)
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="vigil-profile-stream", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(self._sleep_s())
            self._wake.clear()
            stopping = self._stop.is_set()
            forced = stopping or self._flush_requested.is_set()
            self._busy = True
            with self._slices_lock:
                slices = self._slicer.due(force=forced)
            for piece in slices:
                self._handle(piece)
            if forced and not stopping:
                self._flush_requested.clear()
            if not stopping:
                self._maybe_replay()
            self._busy = False
            self._metrics.spool_bytes.set(self._spool.bytes)
            if stopping:
                return

    def _sleep_s(self) -> float:
        """Until the next slice is due (sent on time, not up to a tick late), at most a tick."""
        with self._slices_lock:
            due_in = self._slicer.seconds_to_next()
        return self._tick_s if due_in is None else min(self._tick_s, max(_TICK_MIN_S, due_in))

    def _handle(self, piece: Slice) -> None:
        rows = piece.rows  # before the build, which empties the slice
        try:
            body = piece.message(self.producer)
        except Exception as exc:  # a bad slice must not kill the sender
            log.warning("cannot profile %d rows of %s/%s: %s", rows, piece.model, piece.version, exc)
            self._drop("error")
            return
        self._counts["rows_profiled"] += rows
        # While older messages wait in the spool, new ones queue behind them (order).
        if not self._spool.files():
            outcome = self._send(body)
            if outcome == "ok":
                self._count("sent", self._metrics.sent)
                return
            if outcome == "rejected":
                self._drop("rejected")
                return
        self._to_spool(body)

    def _to_spool(self, body: bytes) -> None:
        if self._spool.append(body):
            self._count("spooled", self._metrics.spooled)
        else:
            self._drop("spool_full")

    def _maybe_replay(self) -> None:
        if time.monotonic() < self._next_replay or not self._spool.files():
            return
        if not self._spool.try_lock():  # another worker is replaying the shared spool
            self._next_replay = time.monotonic() + 1.0
            return
        for path in self._spool.files()[:_REPLAY_CHUNK]:
            try:
                body = path.read_bytes()
            except FileNotFoundError:
                continue
            outcome = self._send(body)
            if outcome == "retry":
                self._next_replay = time.monotonic() + self._backoff
                self._backoff = min(_BACKOFF_MAX_S, self._backoff * 2)
                return
            # Counted before the file goes: `flush()` waits for an empty spool, and a
            # waiter that sees it empty must also see the replay counted.
            if outcome == "ok":
                self._count("replayed", self._metrics.replayed)
            else:
                self._drop("rejected")
            self._spool.remove(path)
        self._backoff = _BACKOFF_MIN_S

    def _send(self, body: bytes) -> Outcome:
        timeout = self.settings.profile_send_timeout_s
        started = time.perf_counter()
        try:
            response = self._session.post(
                self.url, data=body, headers=self._headers, timeout=(min(0.5, timeout), timeout),
                verify=self.settings.tls_verify,  # an https monitor is checked against VIGIL_TLS_CA_FILE
            )
        except Exception as exc:  # connection refused/reset, timeout: the monitor is away
            if "SSL" in type(exc).__name__ and not self._tls_warned:
                # Not transient like the rest: say so once, then keep spooling and retrying.
                self._tls_warned = True
                log.warning("cannot reach the monitor over TLS (check VIGIL_TLS_CA_FILE): %s", exc)
            return "retry"
        self._metrics.latency.observe(time.perf_counter() - started)
        if response.status_code < 300:
            return "ok"
        if response.status_code >= 500 or response.status_code in _RETRYABLE_STATUS:
            return "retry"
        if response.status_code in _AUTH_STATUS:
            self._unauthorized(response)
            return "retry"
        log.warning("monitor rejected a profile (%s): %s", response.status_code, response.text[:200])
        return "rejected"

    def _unauthorized(self, response: Any) -> None:
        """Count a 401/403 and say so loudly (once a minute): profiles pile up in the spool."""
        self._count("unauthorized", self._metrics.unauthorized)
        now = time.monotonic()
        if now - self._auth_logged_at >= _AUTH_LOG_EVERY_S:
            self._auth_logged_at = now
            log.error("the monitor refused this producer's API token (HTTP %s: %s); profiles are kept in the spool "
                      "and retried until VIGIL_API_TOKEN / VIGIL_API_TOKEN_FILE match the monitor's",
                      response.status_code, response.text[:200])

    def _count(self, key: str, counter: Any) -> None:
        self._counts[key] += 1
        counter.inc()

    def _drop(self, reason: str) -> None:
        self._counts[reason] += 1
        self._metrics.dropped.labels(reason=reason).inc()
