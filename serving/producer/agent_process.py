"""The profile agent: a process per serving worker that does all the monitoring work.

The worker hands over what it served every 100 ms through a bounded multiprocessing
queue (agent.py). This process takes it out and, off the worker's GIL: slices it and
profiles each slice with whylogs, sends the profiles to the monitor, spools and replays
(stream.ProfileStreamer), and appends the rows to the prediction log (vigil/predlog). It
also reads back the batches the worker had to spill to disk when this queue was full.

Lifecycle: it ends on the worker's stop message (after draining), when the worker dies
(its parent pid changes: it drains what is queued and flushes), or a few seconds after
a SIGTERM (the whole process group gets one when the server stops; the worker's stop
message normally arrives first).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from typing import Any

from vigil.config import Settings, apply_to_process
from vigil.served_batch import ServedBatch, decode
from vigil.whylogs_compat import whylogs

log = logging.getLogger("bentoml.vigil.agent")
STOP = None  # the worker's stop message
_POLL_S = 0.2
_TERM_GRACE_S = 5.0
_MAINTAIN_EVERY_S = 60.0
_FIRST_MAINTENANCE_S = 5.0
_SPOOL_CHUNK = 64
_DRAIN_S = 5.0


class AgentMetrics:
    """The agent's own Prometheus metrics (multiprocess files under the worker's dir)."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.batches = Counter("vigil_profile_agent_batches_total", "Batches the agent processed", ["source"])
        self.log_rows = Counter("vigil_prediction_log_rows_total", "Rows offered to the log", ["outcome"])
        self.log_files = Counter("vigil_prediction_log_files_total", "Part files written")
        self.log_errors = Counter("vigil_prediction_log_write_errors_total", "Failed flushes (rows kept, retried)")
        self.flush = Histogram("vigil_prediction_log_flush_seconds", "Time to write one flush",
                               buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))
        self.buffered = Gauge("vigil_prediction_log_buffered_rows", "Rows waiting for the next flush",
                              multiprocess_mode="livesum")
        self._seen: dict[str, int] = {}

    def sync(self, stats: dict[str, int]) -> None:
        """Advance the counters to the writer's totals."""
        for key, counter in (("rows_written", self.log_rows.labels("written")),
                             ("rows_sampled_out", self.log_rows.labels("sampled_out")),
                             ("files_written", self.log_files), ("write_errors", self.log_errors)):
            delta = stats[key] - self._seen.get(key, 0)
            if delta:
                counter.inc(delta)
                self._seen[key] = stats[key]


class Agent:
    """Everything the agent process does with a batch, and its housekeeping."""

    def __init__(self, settings: Settings) -> None:
        from vigil.predlog.writer import RowLog
        from serving.producer.spool import Spool
        from serving.producer.stream import ProfileStreamer

        self.settings = settings
        self.metrics = AgentMetrics()
        self.streamer = ProfileStreamer(settings) if settings.profile_stream else None
        root = settings.prediction_log_dir
        self.rows = RowLog(root, settings.prediction_log_flush_seconds, settings.prediction_log_max_rows_per_second) if root else None
        self.spill = Spool(settings.raw_spool_dir, settings.profile_spool_bytes, suffix=".raw")
        self.next_replay = 0.0
        self._stopping = threading.Event()
        self._maintenance: threading.Thread | None = None
        if self.streamer is not None:
            self.streamer.start()
        if self.rows is not None:
            self._maintenance = threading.Thread(target=self._maintain_loop, name="vigil-log-maintenance", daemon=True)
            self._maintenance.start()

    def handle(self, batch: ServedBatch, source: str = "queue") -> None:
        self.metrics.batches.labels(source).inc()
        if self.rows is not None:
            try:
                self.rows.append(batch)
            except Exception as exc:  # one odd batch must not stop the agent
                log.warning("vigil agent: cannot log batch %s: %s", batch.batch_id, exc)
        if self.streamer is not None:
            self.streamer.submit(batch)  # into its slice; profiled and sent about once a second

    def replay_spilled(self) -> int:
        """Process batches the worker spilled to disk (one agent at a time: flock); returns how many."""
        self.next_replay = time.monotonic() + 1.0  # also under steady load, not only when idle
        if not self.spill.files() or not self.spill.try_lock():
            return 0
        done = 0
        try:
            for path in self.spill.files()[:_SPOOL_CHUNK]:
                try:
                    blob = path.read_bytes()
                except FileNotFoundError:
                    continue
                # Removed before processing: at most once, like the log buffer it lands in.
                self.spill.remove(path)
                done += 1
                try:
                    self.handle(decode(blob), source="spill")
                except ValueError as exc:
                    log.warning("vigil agent: skipping unreadable spilled batch %s: %s", path.name, exc)
        finally:
            self.spill.unlock()
        return done

    def tick(self) -> None:
        """Periodic work: flush the log when due (compaction and retention have their own thread)."""
        if self.rows is not None:
            if self.rows.due():
                self.rows.flush()
                self.metrics.flush.observe(self.rows.last_flush_seconds)
            self.metrics.sync(self.rows.stats)
            self.metrics.buffered.set(self.rows.buffered_rows)

    def _maintain_loop(self) -> None:
        """Retention and compaction once a minute, in this thread, at the lowest priority.

        A merge costs ~1 µs a row, about half a second of CPU for a minute of a busy
        worker's rows, and niced behind a loaded worker it took seconds of wall time. Run
        from the main loop (as before), nothing was taken from the worker's queue meanwhile:
        in the soak's samples the monitor fell ~45,000 rows (~7 s) behind at a merge.
        A flush racing a merge is safe: a merge only touches the files it listed first
        (vigil/predlog/files.py), as with several workers' agents on one log.
        """
        try:  # Linux: a thread's own nice value; the flush and the profiles go first
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (AttributeError, OSError):
            pass
        wait = _FIRST_MAINTENANCE_S
        while not self._stopping.wait(wait):
            self._maintain()
            wait = _MAINTAIN_EVERY_S

    def _maintain(self) -> None:
        from vigil.predlog import files

        try:
            files.maintain(self.settings.prediction_log_dir, files.ROWS, self.settings.prediction_log_retention_days)
        except Exception as exc:
            log.warning("vigil agent: prediction log maintenance failed: %s", exc)

    def close(self, timeout: float) -> None:
        self._stopping.set()  # a merge under way finishes (or, at exit, is undone safely)
        if self._maintenance is not None:
            self._maintenance.join(min(timeout, 2.0))
        if self.rows is not None:
            self.rows.flush()
            self.metrics.sync(self.rows.stats)
            self.metrics.buffered.set(self.rows.buffered_rows)
        if self.streamer is not None:
            self.streamer.close(timeout)
            log.info("vigil agent %d: profile stream closed: %s", os.getpid(), self.streamer.stats())
        if self.rows is not None:
            log.info("vigil agent %d: prediction log: %s", os.getpid(), self.rows.stats)


def _drain(inbox: Any, agent: Agent, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            item = inbox.get(timeout=0.05)
        except (queue.Empty, EOFError, OSError):
            return
        if item is STOP:
            return
        for batch in item:
            agent.handle(batch)


def run_agent(settings: Settings, inbox: Any, parent_pid: int, worker_index: str = "0") -> None:
    """Entry point of the agent process (multiprocessing spawn target)."""
    term_at: list[float] = []
    # The server's stop signals the whole process group: keep draining, the worker's
    # stop message follows; give up a few seconds later if it never comes. (Started with
    # these signals blocked, so one sent during startup waits for this handler.)
    signal.signal(signal.SIGTERM, lambda *_: term_at.append(time.monotonic()))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    # Background work: when it shares a core with the serving worker, serving goes first
    # (a backlog queues up, then spills to disk, and is caught up when load drops).
    os.nice(10)
    # whylogs first, while this process has one thread: its import can then skip the parts
    # Vigil does not use (vigil/whylogs_compat.py).
    whylogs()
    apply_to_process(settings)
    from serving.process_metrics import start_sampling

    start_sampling("agent", worker_index)  # its worker's index: a bounded label, not the pid
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    agent = Agent(settings)
    log.info("vigil agent %d started for worker %d", os.getpid(), parent_pid)
    try:
        while True:
            try:
                item = inbox.get(timeout=_POLL_S)
            except queue.Empty:
                item = "idle"
            except (EOFError, OSError):  # the queue broke: the worker is gone
                break
            if item is STOP:  # the worker stops: also take in what it spilled
                deadline = time.monotonic() + _DRAIN_S
                while agent.spill.files() and time.monotonic() < deadline:
                    if not agent.replay_spilled():
                        time.sleep(0.05)  # another agent holds the spill: let it work
                break
            if isinstance(item, list):  # one hand-off: the batches of ~100 ms
                for batch in item:
                    agent.handle(batch)
            if item == "idle" or time.monotonic() >= agent.next_replay:
                agent.replay_spilled()
            agent.tick()
            if os.getppid() != parent_pid:  # the worker died: save what is queued
                _drain(inbox, agent, time.monotonic() + _DRAIN_S)
                break
            if term_at and time.monotonic() - term_at[0] > _TERM_GRACE_S:
                _drain(inbox, agent, time.monotonic() + 1.0)
                break
    finally:
        agent.close(timeout=max(1.0, settings.profile_send_timeout_s * 2))
