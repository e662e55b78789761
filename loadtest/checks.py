"""The long-ish checks on a running Vigil server: memory flatness and overload shedding."""

from __future__ import annotations

import re
from dataclasses import dataclass

import psutil
import requests

from loadtest.wrk import LoadResult, run_wrk


def worker_rss_mb(pid: int) -> float:
    """RSS of the BentoML worker processes under `pid` (the whole tree if there are none)."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
        workers = [p for p in tree if "_bentoml_impl.worker" in " ".join(p.cmdline())]
        return sum(p.memory_info().rss for p in (workers or tree)) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


@dataclass(frozen=True)
class MemoryResult:
    """Worker RSS after the first `early_requests` and after `total_requests`."""

    early_requests: int
    early_rss_mb: float
    total_requests: int
    total_rss_mb: float
    errors: int

    @property
    def growth(self) -> float:
        """Relative RSS growth between the two points (0.05 = +5 %)."""
        return self.total_rss_mb / self.early_rss_mb - 1.0 if self.early_rss_mb else 0.0


def memory_check(url: str, body: str, pid: int, early: int = 20_000, total: int = 200_000,
                 concurrency: int = 64, chunk_s: float = 5.0, cpu: int | None = 1) -> MemoryResult:
    """Drive `url` in `chunk_s` wrk runs until `total` requests, reading RSS after `early`."""
    done = errors = 0
    early_point: tuple[int, float] | None = None
    while done < total:
        result = run_wrk(url, body, concurrency, chunk_s, cpu=cpu)
        if result.requests == 0:
            raise RuntimeError(f"memory check: no request answered at {url}")
        done += result.requests
        errors += result.errors
        if early_point is None and done >= early:
            early_point = (done, worker_rss_mb(pid))
    assert early_point is not None
    return MemoryResult(early_point[0], early_point[1], done, worker_rss_mb(pid), errors)


@dataclass(frozen=True)
class OverloadResult:
    """Load past capacity, then normal load again on the same server."""

    overload: LoadResult  # errors counts the shed requests among others
    shed: int  # 503s counted by the server itself (vigil_rejected_requests_total{reason="overloaded"})
    queue_limit: int
    recovery: LoadResult

    @property
    def recovered(self) -> bool:
        return self.recovery.errors == 0 and self.recovery.requests > 0


def shed_total(metrics_url: str) -> float:
    """vigil_rejected_requests_total{reason="overloaded"} from a /metrics page."""
    text = requests.get(metrics_url, timeout=5).text
    match = re.search(r'^vigil_rejected_requests_total\{reason="overloaded"\} ([0-9.e+]+)$', text, re.M)
    return float(match[1]) if match else 0.0


def overload_check(base: str, path: str, body: str, queue_limit: int, concurrency: int = 256,
                   seconds: float = 5.0, cpu: int | None = 1) -> OverloadResult:
    """`concurrency` clients for `seconds`, then 16 clients for 2 s: sheds with 503, then recovers."""
    before = shed_total(base + "/metrics")
    overload = run_wrk(base + path, body, concurrency, seconds, cpu=cpu)
    shed = int(shed_total(base + "/metrics") - before)
    recovery = run_wrk(base + path, body, 16, 2.0, cpu=cpu)
    return OverloadResult(overload, shed, queue_limit, recovery)
