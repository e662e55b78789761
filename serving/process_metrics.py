"""Resource usage of the service's processes on its multiprocess /metrics.

In multiprocess mode /metrics is rendered from the files every process writes (see
serving/metrics.py), so a process's usage has to be written there: each worker and each
profile agent runs one daemon thread that samples /proc/self (vigil/process_stats.py)
every SAMPLE_S and writes it as `process_*{role, index}`. `index` is the BentoML worker's
number (an agent takes its worker's), so a replica exports 2 x workers series per name.

Gauges are `livemax` (one writer per role/index, and a dead process's files drop out);
the CPU counter is summed over the files, so a restarted worker's count keeps rising.
Cost: one sample + write of about 30 µs (measured) per SAMPLE_S per process.
"""

from __future__ import annotations

import threading
from typing import Any

from vigil.process_stats import HELP, LABELS, sample

SAMPLE_S = 2.0
_started: list[threading.Thread] = []


def worker_index() -> str:
    """This BentoML worker's number ("1", "2", ...), or "0" outside a BentoML worker."""
    try:
        from bentoml._internal.context import server_context

        return str(server_context.worker_index or 0)
    except Exception:  # an older/newer BentoML without it: one bounded value anyway
        return "0"


class ProcessMetrics:
    """The process_* series of one process, written into the multiprocess files."""

    def __init__(self, role: str, index: str, registry: Any | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        # A private registry: the global one already holds prometheus_client's own
        # (unlabelled) process collector under the same names; the values still go to
        # the multiprocess files, which is what /metrics reads.
        reg = {"registry": registry if registry is not None else CollectorRegistry()}
        self._cpu = Counter("process_cpu_seconds", HELP["process_cpu_seconds"], LABELS, **reg).labels(role, index)
        gauges = {name: Gauge(name, HELP[name], LABELS, multiprocess_mode="livemax", **reg).labels(role, index)
                  for name in ("process_resident_memory_bytes", "process_open_fds", "process_threads")}
        self._rss, self._fds, self._threads = (gauges["process_resident_memory_bytes"], gauges["process_open_fds"],
                                               gauges["process_threads"])
        self._cpu_seen = 0.0

    def update(self) -> bool:
        """Sample /proc/self once; False where there is no /proc."""
        now = sample()
        if now is None:
            return False
        if now.cpu_seconds > self._cpu_seen:
            self._cpu.inc(now.cpu_seconds - self._cpu_seen)
            self._cpu_seen = now.cpu_seconds
        self._rss.set(now.rss_bytes)
        self._fds.set(now.open_fds)
        self._threads.set(now.threads)
        return True


def start_sampling(role: str, index: str, interval: float = SAMPLE_S) -> ProcessMetrics | None:
    """Export this process's usage from now on (once per process); None if already started or no /proc."""
    if _started:
        return None
    metrics = ProcessMetrics(role, index)
    if not metrics.update():
        return None
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            try:
                metrics.update()
            except Exception:  # a sampling hiccup must never take anything else down
                pass

    thread = threading.Thread(target=run, name="vigil-process-metrics", daemon=True)
    thread.start()
    _started.append(thread)
    return metrics
