"""The worker's half of the profile agent: start it, feed it, restart it, stop it.

Profiling and JSON building in a thread of the serving worker would cost ~30 % of its
throughput (measured: GIL contention with the event loop). So the worker only copies
each served batch's rows into column arrays (feed.py); a thread hands them to a bounded
multiprocessing queue every 100 ms, as one item; a separate process (agent_process.py,
started with the spawn context so it shares nothing with the worker's threads and event
loop) does the rest.

No silent loss on this side: a full queue spills the batches to the raw spool on disk
(read back by the agent), a spool over its cap drops it and counts it, and a dead
agent is restarted (counted) while its queued hand-offs are counted as lost.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import signal
import threading
import time
from typing import Any, Callable

from vigil.config import Settings
from vigil.served_batch import ServedBatch, encode

log = logging.getLogger("bentoml.vigil")
_CHECK_EVERY_S = 0.5  # how often the supervisor looks whether the agent is alive
_HAND_OFF_S = 0.1  # served batches go to the agent in one queue item this often (see _hand_off)
_RESTART_BACKOFF_S = (0.5, 30.0)


class HandOffMetrics:
    """The worker side's counters: what could not go to the agent's queue."""

    def __init__(self) -> None:
        from prometheus_client import Counter

        self.spilled = Counter("vigil_profile_agent_spilled_total", "Batches spilled to disk: agent queue full or agent down")
        self.dropped = Counter("vigil_profile_agent_dropped_total", "Batches (spill_full) or 100-ms hand-offs (agent_died) lost before the agent",
                               ["reason"])
        self.restarts = Counter("vigil_profile_agent_restarts_total", "Agent processes restarted after dying")


def _mark_dead(pid: int) -> None:
    """Drop a finished agent's live gauges from the multiprocess metrics directory."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        try:
            multiprocess.mark_process_dead(pid)
        except OSError:
            pass


class ProfileAgent:
    """Owns one agent process and the thread that hands it what the worker served."""

    def __init__(self, settings: Settings, take: Callable[[], tuple[int, list[ServedBatch]]]) -> None:
        self.settings = settings
        self._take = take  # what was served since the last call: (batches, records) (feed.py)
        self._ctx = multiprocessing.get_context("spawn")
        self._proc: Any = None
        self._queue: Any = None
        self._spill: Any = None
        self._metrics: HandOffMetrics | None = None
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._restart_at = 0.0
        self._backoff = _RESTART_BACKOFF_S[0]
        self._closed = False
        self.counts = {"submitted": 0, "spilled": 0, "spill_full": 0, "agent_died": 0, "restarts": 0}

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the agent process and its supervisor thread (returns at once)."""
        self._metrics = HandOffMetrics()
        self._launch()
        # One thread hands batches over every 100 ms and looks after the agent: a dead agent
        # must come back (and read the spill) even when no traffic arrives.
        self._supervisor = threading.Thread(target=self._supervise, name="vigil-agent-supervisor", daemon=True)
        self._supervisor.start()

    def _supervise(self) -> None:
        next_check = 0.0
        while not self._stop.wait(_HAND_OFF_S):
            try:
                self._hand_off()
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + _CHECK_EVERY_S
                    self._check(time.monotonic())
            except Exception as exc:  # never let supervision die silently
                log.warning("vigil: profile agent supervision failed: %s", exc)

    def _launch(self) -> None:
        from serving.process_metrics import worker_index
        from serving.producer.agent_process import run_agent

        self._queue = self._ctx.Queue(maxsize=self.settings.profile_queue_size)
        self._proc = self._ctx.Process(target=run_agent,
                                       args=(self.settings, self._queue, os.getpid(), worker_index()),
                                       name="vigil-profile-agent", daemon=True)
        # The server's stop SIGTERMs the whole process group, possibly while the agent is
        # still importing: born with SIGTERM/SIGINT blocked (the mask survives exec), it
        # installs its own handlers first and then unblocks them (agent_process.run_agent).
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self._proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        self._launched = time.monotonic()

    # -- hand-off thread ------------------------------------------------------------
    def _hand_off(self) -> None:
        """Put what was served since the last hand-off into the agent's queue as one item.

        One multiprocessing put per ~100 ms instead of one per batch: under load the batcher
        makes thousands of small batches a second, and the per-put cost (pickle call,
        semaphore, pipe write, agent wake-up) was what the worker still paid. The agent's
        own cost is mostly per record (one Arrow table, one slice append): log append +
        slices cost 1.4 / 0.7 / 0.5 µs a row at 100 / 500 / 2,500 rows a record
        (`python -m loadtest.agent_cost`), so at 10k req/s 100 ms (~1,000 rows) costs about
        half what 20 ms (~200 rows) did. The monitor sees rows in 1-s slices
        either way.
        """
        batches, items = self._take()
        if not items:
            return
        self.counts["submitted"] += batches
        inbox = self._queue  # read once: supervision may swap it
        if inbox is not None:
            try:
                inbox.put_nowait(items)
                return
            except (queue.Full, ValueError):  # full, or closed under us (agent died)
                pass
        for batch in items:
            self._to_spill(batch)

    def _to_spill(self, batch: ServedBatch) -> bool:
        from serving.producer.spool import Spool

        if self._spill is None:
            self._spill = Spool(self.settings.raw_spool_dir, self.settings.profile_spool_bytes, suffix=".raw")
        try:
            stored = self._spill.append(encode(batch))
        except OSError as exc:
            log.warning("vigil: cannot spill a batch for the profile agent: %s", exc)
            stored = False
        key = "spilled" if stored else "spill_full"
        self.counts[key] += 1
        if self._metrics is not None:
            self._metrics.spilled.inc() if stored else self._metrics.dropped.labels("spill_full").inc()
        return stored

    # -- supervision ----------------------------------------------------------------
    def _check(self, now: float) -> None:
        if self._closed or self._proc is None:
            return
        if self._queue is None:  # waiting out the restart backoff
            if now >= self._restart_at:
                self._launch()
            return
        if self._proc.is_alive():
            if now - self._launched > 60.0:
                self._backoff = _RESTART_BACKOFF_S[0]  # it lived a while: next restart is quick
            return
        self._abandon()

    def _abandon(self) -> None:
        """The agent died: count what its queue held, restart it after a backoff."""
        # Its reader lock may have died with it: never read this queue again. Swapped and
        # closed first, so a submit racing with us spills (put on a closed queue raises).
        old, self._queue = self._queue, None
        old.cancel_join_thread()
        old.close()
        lost = 0
        try:
            lost = old.qsize()
        except (NotImplementedError, OSError, ValueError):
            pass
        _mark_dead(self._proc.pid)
        self.counts["agent_died"] += lost
        self.counts["restarts"] += 1
        if self._metrics is not None:
            self._metrics.restarts.inc()
            if lost:
                self._metrics.dropped.labels("agent_died").inc(lost)
        log.warning("vigil: profile agent %s exited (code %s); %d queued hand-offs lost; restarting in %.1f s",
                    self._proc.pid, self._proc.exitcode, lost, self._backoff)
        self._restart_at = time.monotonic() + self._backoff
        self._backoff = min(_RESTART_BACKOFF_S[1], self._backoff * 2)

    def close(self, timeout: float = 10.0) -> None:
        """Ask the agent to drain and flush, wait up to `timeout`, then make sure it is gone."""
        self._closed = True
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(2.0)
        self._hand_off()  # the last batches served before the stop
        proc, q = self._proc, self._queue
        if proc is None:
            return
        if q is not None and proc.is_alive():
            try:
                q.put(None, timeout=min(2.0, timeout))
            except (queue.Full, ValueError):
                pass
        proc.join(timeout)
        if proc.is_alive():
            log.warning("vigil: profile agent %s did not finish within %.1f s; terminating it", proc.pid, timeout)
            proc.terminate()
            proc.join(2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)
        if q is not None:
            q.cancel_join_thread()  # the agent is gone: nothing left to deliver to it
            q.close()
        _mark_dead(proc.pid)
        log.info("vigil: profile agent %s stopped (exit code %s): %s", proc.pid, proc.exitcode, self.counts)
