"""`make soak` / `vigil soak`: a long run at 80 % of the measured sustained maximum, HTTP and gRPC mixed,
the monitor streaming — and the verdicts on memory, latency, errors and monitor lag.

1. Start Vigil (iris, one worker, gRPC on, every batch profiled and streamed to a real
   monitor), pinned to core 0 with its agent; the monitor and the load generators on core 1.
2. Measure the maximum of the mix: wrk (HTTP, c=48) and h2load (gRPC, c=16) together, on the
   same server with monitoring off (the unwatched burst) and watched; then wait for the
   monitor to catch up (the time it takes is reported too).
3. Find the sustained maximum: constant-rate steps at rising shares of the unwatched burst
   until serving + monitoring no longer keep up (a burst starves the profile agent, so it
   measures serving alone); the same server with monitoring off climbs the same steps,
   interleaved, for the unwatched maximum (soak_ramp.py).
4. Offer `load` × the sustained maximum at a constant rate with the same gRPC share (h2load with
   --rps, the same 48 + 16 clients, interleaved: soak_probe.PacedLoad) for the warm-up
   plus `minutes`, sampling RSS, CPU, the monitor's ingest lag and rows served vs
   ingested every `sample_s`.
5. From h2load's per-request logs: p50/p99 per 10 s; errors from h2load and from the
   service's own counters (a failed gRPC call is still HTTP 200 to h2load).
6. Write soak.png and the Soak section of BENCHMARKS.md; return the report (exit 1 on a
   missed floor, the report is written either way).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import psutil

from loadtest.bench import LOAD_CPU, ROOT, started
from loadtest.grpc_load import check_rpc, run_grpc_load
from loadtest.servers import VIGIL_HTTP, BenchModel, Server, monitored_server, prepare_models, vigil_server
from loadtest.soak_probe import Counters, find_monitor, service_counters, take_sample
from loadtest.soak_ramp import (
    GRPC_CLIENTS, HTTP_CLIENTS, MAX_DRAIN_S, RAMP_STEP_S, Side, Target, drain, paced, search,
)
from loadtest.soak_report import Errors, SoakReport, latency_buckets, plot, render, write_section
from loadtest.wrk import LoadResult, run_wrk
from vigil import config
from vigil.config import Settings
from vigil.procs import free_port, stopped

__all__ = ["SoakReport", "run_soak"]

# Healthy lag is ~0.2 s (100 ms hand-off to the agent + 100 ms linger + profiling + one POST).
# 5 s leaves room for scheduling noise on a shared core while staying far below the
# monitor's 60-s window; a monitor that cannot keep up grows its lag without bound, so
# it crosses any constant during a 10-minute run.
LAG_BOUND_S = 5.0
SMOKE = {"minutes": 0.25, "warmup_s": 3.0, "sample_s": 1.0, "max_seconds": 2.0, "ramp_step_s": 2}


def _validate(minutes: float, load: float, warmup_s: float, sample_s: float) -> None:
    if not minutes > 0:
        raise ValueError(f"minutes must be > 0, got {minutes}")
    if not 0 < load <= 1:
        raise ValueError(f"load must be in (0, 1] (a share of the measured maximum), got {load}")
    if warmup_s < 0 or not sample_s > 0:
        raise ValueError(f"warm-up must be >= 0 s and the sample period > 0 s, got {warmup_s} and {sample_s}")
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: apt-get install wrk nghttp2-client")


def measure_max(target: Target, seconds: float) -> tuple[LoadResult, LoadResult]:
    """Saturate with both protocols at once: (wrk HTTP c=48, h2load gRPC c=16)."""
    with ThreadPoolExecutor(2) as pool:
        grpc = pool.submit(run_grpc_load, target.grpc, target.server.grpc_message, GRPC_CLIENTS, seconds,
                           cpu=LOAD_CPU, metrics_url=target.base + "/metrics")
        time.sleep(1.0)  # run_grpc_load warms up for 1 s before it measures: overlap the two windows
        http = pool.submit(run_wrk, target.base + target.server.path, target.server.body, HTTP_CLIENTS, seconds,
                           cpu=LOAD_CPU)
        return http.result(), grpc.result()


def _sample_until_done(report: SoakReport, target: Target, serve_pid: int, procs: list, t0: float,
                       sample_s: float) -> None:
    monitor = find_monitor(target.monitor_port)
    deadline = t0 + report.duration_s + 60  # h2load stops itself at -D; this only guards a hang
    next_at, printed = t0, -math.inf
    while any(p.poll() is None for p in procs):
        if time.time() > deadline:
            for p in procs:
                p.kill()
            raise RuntimeError("h2load did not stop after its duration")
        if time.time() >= next_at:
            s = take_sample(time.time() - t0, serve_pid, monitor, target.base + "/metrics",
                            target.monitor + "/metrics", target.model)
            report.samples.append(s)
            next_at += sample_s
            if s.t - printed >= 30:
                printed = s.t
                print(f"  {s.t:5.0f} s  worker {s.worker_mb:5.0f} MB  agent {s.agent_mb:4.0f} MB  lag {s.lag_s:5.2f} s"
                      f"  rows served {s.rows_served:,.0f} ingested {s.rows_ingested:,.0f}", flush=True)
        time.sleep(0.1)


def _soak(report: SoakReport, target: Target, serve_pid: int, tmp: Path, sample_s: float) -> None:
    """Run both constant-rate h2loads while sampling, then read their logs and the counters."""
    server, seconds = target.server, math.ceil(report.duration_s)
    check_rpc(target.grpc, server.grpc_message)
    before = service_counters(target.base + "/metrics")
    t0 = time.time()
    loads = paced(target, report.http_rps, report.grpc_rps, seconds, tmp)
    _sample_until_done(report, target, serve_pid, [p for load in loads for p in load.procs], t0, sample_s)
    after = service_counters(target.base + "/metrics")
    http, grpc = (load.summary() for load in loads)
    frames = {load.protocol: load.frame() for load in loads}
    report.buckets, report.p50_ms, report.p99_ms = latency_buckets(pd.concat(frames.values()), report.duration_s)
    report.protocol_p99_ms = {p: latency_buckets(f, report.duration_s)[2] for p, f in frames.items()}
    report.http_requests, report.grpc_requests = http.done, grpc.done
    report.errors = _errors(report, frames, http.failed, grpc.failed, grpc.succeeded, before, after)


def _errors(report: SoakReport, frames: dict[str, pd.DataFrame], http_failed: int, grpc_failed: int,
            grpc_succeeded: int, before: Counters, after: Counters) -> Errors:
    def bad(protocol: str) -> int:  # non-200 rows (and failed streams, -1) in h2load's log
        return int((frames[protocol]["status"] != 200).sum())

    # request_done(…, "grpc") runs only for a successful ModelInfer: a call h2load saw answered
    # (HTTP 200) that the service did not count as a success failed at the gRPC level.
    grpc_app = max(0, grpc_succeeded - int(after.grpc_ok - before.grpc_ok))
    pids = {pid for s in report.samples for pid in s.worker_pids}
    first = len(report.samples[0].worker_pids) if report.samples else 0
    return Errors(http=max(http_failed, bad("http")), grpc=max(grpc_failed, bad("grpc")) + grpc_app,
                  rejected=int(after.rejected - before.rejected),
                  failed_rows=int(after.rows_failed - before.rows_failed), worker_restarts=max(0, len(pids) - first))


def _maximum(target: Target, seconds: float) -> tuple[LoadResult, LoadResult, float]:
    """The maximum of the mix, then the seconds the monitor needed to catch up with it."""
    max_http, max_grpc = measure_max(target, seconds)
    if max_http.rps <= 0 or max_grpc.rps <= 0:
        raise RuntimeError(f"no throughput measured (HTTP {max_http.rps:.0f}, gRPC {max_grpc.rps:.0f} req/s)")
    print(f"soak: maximum of the mix {max_http.rps + max_grpc.rps:,.0f} req/s (HTTP {max_http.rps:,.0f}, errors "
          f"{max_http.errors}; gRPC {max_grpc.rps:,.0f}, errors {max_grpc.errors})", flush=True)
    # Saturation starves the profile agent and the monitor (same core), which buffer and
    # catch up afterwards: start the soak caught up, and report how long that took.
    served, ingested, seconds_behind = drain(target, timeout=MAX_DRAIN_S)
    print(f"soak: the monitor caught up in {seconds_behind:.0f} s ({ingested:,.0f} of {served:,.0f} rows)", flush=True)
    return max_http, max_grpc, seconds_behind


def run_soak(settings: Settings, minutes: float = 10.0, load: float = 0.8, warmup_s: float = 60.0,
             sample_s: float = 5.0, out: Path | None = None, *, max_seconds: float = 15.0,
             rate: float | None = None, ramp_step_s: int = RAMP_STEP_S, command: str = "vigil soak") -> SoakReport:
    """Soak Vigil at `load` × its measured maximum for `warmup_s` + `minutes`; write soak.png
    and the Soak section of `out` (default BENCHMARKS.md). Everything runs under `<home>/soak`,
    which is emptied first (registry, monitor state, spools): the user's state is left alone.

    The load is `load` x the sustained maximum: the highest of a ramp of constant-rate steps
    (`ramp_step_s` each) that serving and monitoring kept up with; the same server with
    monitoring off climbs the same steps, interleaved (soak_ramp.search), for the floor.
    `rate`: offer this many req/s in total instead (no search: the maxima are the bursts').
    """
    _validate(minutes, load, warmup_s, sample_s)
    if rate is not None and not rate > 0:
        raise ValueError(f"rate must be > 0 req/s, got {rate}")
    out = out or ROOT / "BENCHMARKS.md"
    out.parent.mkdir(parents=True, exist_ok=True)  # now, not after a 12-minute run
    soak_settings = config.replace(settings, home=settings.home / "soak")
    # A clean slate per run: a previous soak stopped with rows still spooled would have this
    # one's agent replay them (monitor work this run's counters never see) on top of its load.
    shutil.rmtree(soak_settings.home, ignore_errors=True)
    log_dir = soak_settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    model = prepare_models(soak_settings, heavy=False)[0]
    bare, server = _servers(soak_settings, model)
    monitor_port = urlsplit(server.companions[0].ready_url).port
    name, version = model.uri.removeprefix("models:/").split("/")
    target = Target(server, f"http://127.0.0.1:{server.port}", f"http://127.0.0.1:{monitor_port}", monitor_port,
                    (name, version))
    with contextlib.ExitStack() as unwatched_run, tempfile.TemporaryDirectory(prefix="vigil-soak-") as tmp:
        bare_proc = unwatched_run.enter_context(started(bare, log_dir))
        unwatched = Target(bare, f"http://127.0.0.1:{bare.port}", "", 0, ("", ""))
        burst_http, burst_grpc = measure_max(unwatched, max_seconds)
        burst = burst_http.rps + burst_grpc.rps
        print(f"soak: unwatched maximum of the mix {burst:,.0f} req/s (HTTP {burst_http.rps:,.0f}, "
              f"gRPC {burst_grpc.rps:,.0f})", flush=True)
        with started(server, log_dir) as proc:
            watched_pids = [proc.pid, *(c.pid for c in proc.companions.values())]
            with stopped([bare_proc.pid]):
                max_http, max_grpc, behind = _maximum(target, max_seconds)
            share = max_grpc.rps / (max_http.rps + max_grpc.rps)
            sides = [Side("unwatched", unwatched, [bare_proc.pid]), Side("watched", target, watched_pids)]
            if rate is None:
                search(sides, burst, share, Path(tmp), ramp_step_s)
                sustained, unwatched_sustained = sides[1].best, sides[0].best
            else:  # an explicit rate skips the search (its "maximum" is then the rate itself)
                sustained, unwatched_sustained, load = rate, burst, 1.0
            unwatched_run.close()  # the soak runs with the watched server alone
            report = SoakReport(
                date=time.strftime("%Y-%m-%d %H:%M"), cores=psutil.cpu_count() or 0, load_avg=os.getloadavg(),
                max_http=max_http, max_grpc=max_grpc, max_catch_up_s=behind, sustained_rps=sustained, load=load,
                unwatched_rps=unwatched_sustained, unwatched_burst_rps=burst,
                http_rps=load * sustained * (1 - share), grpc_rps=load * sustained * share,
                http_clients=HTTP_CLIENTS, grpc_clients=GRPC_CLIENTS, warmup_s=warmup_s,
                duration_s=warmup_s + minutes * 60, slo_p99_ms=settings.slo_p99_ms, lag_bound_s=LAG_BOUND_S,
                command=command, ramp=sides[1].steps, unwatched_ramp=sides[0].steps,
            )
            print(f"soak: offering {report.http_rps + report.grpc_rps:,.0f} req/s ({load:.0%} of {sustained:,.0f}) "
                  f"for {report.duration_s:.0f} s ({warmup_s:.0f} s warm-up)", flush=True)
            # h2load's logs: ~30 bytes per request
            _soak(report, target, proc.pid, Path(tmp), sample_s)
            report.rows_served, report.rows_ingested, _ = drain(target)
    report.load_avg = os.getloadavg()
    for floor in report.floors():
        print(f"  [{'ok' if floor.ok else 'MISSED'}] {floor.name}: {floor.value}", flush=True)
    report.chart = plot(report, out.with_name("soak.png"))
    write_section(render(report), out)
    print(f"wrote {out} and {report.chart}")
    return report


def _servers(settings: Settings, model: BenchModel) -> tuple[Server, Server]:
    """(the server with monitoring off, the same server watched: agent, prediction log, monitor)."""
    bare = vigil_server(settings, model, VIGIL_HTTP, free_port, grpc=True)
    # Both run during the search, and BentoML empties its home's Prometheus directory at every
    # start: with one home the second start would delete the first one's metric files.
    bare.env["BENTOML_HOME"] = str(settings.home / "bentoml-unwatched")
    server = monitored_server(settings, model, free_port, grpc=True)
    # The monitor is its own deployment (its own pod/host in production): it gets the load
    # generators' core rather than taking a share of the service's.
    server.companions = [dataclasses.replace(c, cpu=LOAD_CPU) for c in server.companions]
    return bare, server
