"""What the soak reads while it runs: process RSS, the service's and the monitor's counters,
and h2load's per-request logs afterwards.

Processes are found by their command line, again at every sample: a worker that died and
was restarted by BentoML shows up as a new pid (counted as a restart, which fails the soak).
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import requests
from prometheus_client.parser import text_string_to_metric_families

_MB = 2**20
WORKER_MARK = "_bentoml_impl.worker"  # BentoML 1.4's worker entry point
AGENT_MARK = "multiprocessing.spawn"  # the profile agent: spawned by the worker (serving/producer/agent.py)


@dataclass(frozen=True)
class Sample:
    """One reading during the soak; `t` is seconds since the load started."""

    t: float
    worker_mb: float  # the BentoML worker(s), summed
    agent_mb: float  # their profile agents
    monitor_mb: float
    lag_s: float  # vigil_monitor_ingest_lag_seconds of the latest batch (nan before the first)
    rows_served: float
    rows_ingested: float
    worker_pids: tuple[int, ...]
    # CPU seconds (user + system) used so far: where core 0's time goes
    worker_cpu_s: float = 0.0
    agent_cpu_s: float = 0.0
    monitor_cpu_s: float = 0.0


@dataclass(frozen=True)
class Counters:
    """The service's counters that decide whether a request failed, read from /metrics."""

    rows_ok: float
    rows_failed: float
    rejected: float
    grpc_ok: float  # vigil_request_seconds_count{protocol="grpc"}: counted on success only


def _rss(procs: list[psutil.Process]) -> float:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / _MB


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def serving_tree(serve_pid: int) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(workers, profile agents) under the `bentoml serve` process — not the arbiter itself."""
    try:
        children = psutil.Process(serve_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return [], []
    workers = [p for p in children if WORKER_MARK in _cmdline(p)]
    worker_pids = {p.pid for p in workers}
    agents = []
    for proc in children:
        try:
            if AGENT_MARK in _cmdline(proc) and proc.ppid() in worker_pids:
                agents.append(proc)
        except psutil.NoSuchProcess:
            pass
    return workers, agents


def find_monitor(port: int) -> psutil.Process | None:
    """The monitor process listening on `port` (started as `python -m monitor --port PORT`)."""
    wanted = ["-m", "monitor", "--port", str(port)]
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if any(cmd[i:i + 4] == wanted for i in range(len(cmd))):
            return proc
    return None


def _samples(url: str) -> list[tuple[str, dict[str, str], float]]:
    text = requests.get(url, timeout=5).text
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def service_counters(metrics_url: str) -> Counters:
    """Rows answered/failed, rejections and successful gRPC calls, summed over labels."""
    ok = failed = rejected = grpc_ok = 0.0
    for name, labels, value in _samples(metrics_url):
        if name == "vigil_predictions_total":
            if labels.get("outcome") == "ok":
                ok += value
            else:
                failed += value
        elif name == "vigil_rejected_requests_total":
            rejected += value
        elif name == "vigil_request_seconds_count" and labels.get("protocol") == "grpc":
            grpc_ok += value
    return Counters(ok, failed, rejected, grpc_ok)


def monitor_ingest(metrics_url: str, model: str, version: str) -> tuple[float, float]:
    """(rows ingested, ingest lag of the latest batch) of one model version, from the monitor's /metrics."""
    rows, lag = 0.0, math.nan
    for name, labels, value in _samples(metrics_url):
        if labels.get("model") != model or labels.get("version") != version:
            continue
        if name == "vigil_monitor_rows_ingested_total":
            rows = value
        elif name == "vigil_monitor_ingest_lag_seconds":
            lag = value
    return rows, lag


def take_sample(t: float, serve_pid: int, monitor: psutil.Process | None, service_metrics: str,
                monitor_metrics: str, model: tuple[str, str]) -> Sample:
    """Read every process's RSS and both /metrics pages once; `model` = (name, version) served."""
    workers, agents = serving_tree(serve_pid)
    served = service_counters(service_metrics).rows_ok
    ingested, lag = monitor_ingest(monitor_metrics, *model)
    monitors = [monitor] if monitor else []
    return Sample(t, _rss(workers), _rss(agents), _rss(monitors), lag, served, ingested,
                  tuple(sorted(p.pid for p in workers)), _cpu(workers), _cpu(agents), _cpu(monitors))


# --- h2load --------------------------------------------------------------------------


@dataclass(frozen=True)
class H2Summary:
    """h2load's end-of-run counts. `failed` includes non-2xx answers and `errored` streams
    (h2load's own definitions); an HTTP-level success can still be a failed gRPC call."""

    done: int
    succeeded: int
    failed: int


def read_summary(output: str) -> H2Summary:
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed", output)
    if counts is None:
        raise RuntimeError(f"h2load printed no summary:\n{output[-2000:]}")
    return H2Summary(int(counts[3]), int(counts[4]), int(counts[5]))



def h2load_argv(url: str, body: Path, headers: list[str], clients: int, per_client_rps: float, seconds: int,
                log: Path, http1: bool, cpu: int | None) -> list[str]:
    """A constant-rate h2load run: `clients` connections, each paced to `per_client_rps`.

    --rps paces each client: when an answer is late the pending requests go out back to
    back as soon as it arrives, so a slow server is still offered the full rate (latency
    is timed from each request's actual send, as h2load does).
    """
    h2load = shutil.which("h2load")
    if h2load is None:
        raise RuntimeError("h2load not found: apt-get install nghttp2-client")
    argv = [h2load, *(["--h1"] if http1 else []), "-t1", f"-c{clients}", f"--rps={per_client_rps:.3f}",
            f"-D{seconds}", "-d", str(body), *(a for h in headers for a in ("-H", h)), "--log-file", str(log), url]
    if cpu is not None and shutil.which("taskset"):
        argv = ["taskset", "-c", str(cpu), *argv]
    return argv


def start_h2load(argv: list[str], output: Path) -> subprocess.Popen:
    with open(output, "wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


@dataclass
class PacedLoad:
    """One protocol's constant-rate load, spread over several h2load processes.

    Within one h2load process every client's --rps timer starts at the same moment, so
    all its clients send together at each tick: 48 clients make a burst of 48 requests
    every tick, which measures burst latency rather than a steady rate (here, at 3,500
    req/s: p50 3.9 ms as one process vs 0.9 ms with the clients interleaved; p99 alike).
    So the clients are split into processes of CLIENTS_PER_H2LOAD, started a fraction of
    a tick apart, and their ticks interleave.
    """

    protocol: str
    procs: list[subprocess.Popen]
    outputs: list[Path]
    logs: list[Path]

    def summary(self) -> H2Summary:
        parts = [read_summary(out.read_text()) for out in self.outputs]
        return H2Summary(*(sum(getattr(p, f) for p in parts) for f in ("done", "succeeded", "failed")))

    def frame(self) -> pd.DataFrame:
        return pd.concat([read_log(log, self.protocol) for log in self.logs], ignore_index=True)


CLIENTS_PER_H2LOAD = 4


def start_paced(protocol: str, url: str, body: Path, headers: list[str], clients: int, rate: float, seconds: int,
                folder: Path, http1: bool, cpu: int | None) -> PacedLoad:
    """Offer `rate` req/s in total from `clients` connections for `seconds` (see PacedLoad)."""
    per_client = rate / clients
    groups = [min(CLIENTS_PER_H2LOAD, clients - i) for i in range(0, clients, CLIENTS_PER_H2LOAD)]
    load = PacedLoad(protocol, [], [], [])
    for i, group in enumerate(groups):
        out, log = folder / f"{protocol}-{i}.out", folder / f"{protocol}-{i}.log"
        log.unlink(missing_ok=True)  # h2load appends to an existing log file
        argv = h2load_argv(url, body, headers, group, per_client, seconds, log, http1, cpu)
        load.procs.append(start_h2load(argv, out))
        load.outputs.append(out)
        load.logs.append(log)
        time.sleep(1.0 / per_client / len(groups))
    return load


def read_log(log: Path, protocol: str) -> pd.DataFrame:
    """h2load's --log-file: start time (µs since the epoch), HTTP status (-1 = failed
    stream), latency (µs); later versions may append columns, which are ignored."""
    names = ["start_us", "status", "latency_us"]
    if not log.exists() or log.stat().st_size == 0:
        frame = pd.DataFrame({n: np.array([], dtype="int64") for n in names})
    else:
        frame = pd.read_csv(log, sep="\t", header=None, usecols=[0, 1, 2], names=names, dtype="int64")
    frame["protocol"] = protocol
    return frame
