"""`make bench` / `vigil bench`: Vigil against its peers, side by side, in one run.

Each server is started in turn pinned to core 0 (`taskset`) with the load generator pinned
to core 1, on the same model and payload, at each concurrency; its answer is checked once
before it is timed. The result is a table (BENCHMARKS.md) and a throughput-vs-p99 chart
(benchmarks.png). `--memory` adds the 200,000-request RSS check, `--overload` the
256-client shedding check (both on Vigil HTTP, iris).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import requests

from vigil.paths import PROJECT_ROOT

from loadtest.checks import memory_check, overload_check, worker_rss_mb
from loadtest.grpc_load import run_grpc_load, run_grpc_stream_load
from loadtest.report import BenchReport, Floor, Row, add_ratios, plot, render, write_markdown
from loadtest.servers import (ALL, VIGIL_HTTP, BenchModel, Server, monitored_server, prepare_models, servers_for,
                              vigil_server)
from loadtest.wrk import run_wrk
from vigil import config
from vigil.config import Settings
from vigil.procs import free_port, running

__all__ = ["Row", "add_ratios", "main", "run_bench"]

ROOT = PROJECT_ROOT  # BENCHMARKS.md and benchmarks.png live here
SERVER_CPU, LOAD_CPU = 0, 1
# The overload run's queue bound: below the 256 clients, so shedding must show.
OVERLOAD_QUEUE_ROWS = 64


def _pinned(argv: list[str], cpu: int = SERVER_CPU) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if shutil.which("taskset") else argv


@contextlib.contextmanager
def started(server: Server, log_dir: Path):
    """Start the server's companions, then the server; check one answer; stop all at exit."""
    base = f"http://127.0.0.1:{server.port}"
    with contextlib.ExitStack() as stack:
        companions = {}
        for companion in server.companions:
            # companions share the server's core unless they name theirs: the load generator keeps the other one
            cpu = SERVER_CPU if companion.cpu is None else companion.cpu
            companions[companion.name] = stack.enter_context(running(
                _pinned(companion.argv, cpu), companion.env, companion.ready_url,
                log_dir / f"{server.name}-{companion.name}.log", timeout=120))
        proc = stack.enter_context(running(_pinned(server.argv), server.env, base + server.ready_path,
                                           log_dir / f"{server.name}.log", timeout=120))
        proc.companions = companions  # type: ignore[attr-defined]  # by name; taskset execs, so pids are theirs
        answer = requests.post(base + server.path, data=server.body, headers={"content-type": "application/json"},
                               timeout=10)
        if answer.status_code != 200 or not server.check(answer.json()):
            raise RuntimeError(f"{server.name} answered {answer.status_code}: {answer.text[:300]}")
        yield proc


def measure(server: Server, concurrencies: list[int], seconds: float, log_dir: Path) -> list[Row]:
    """Start `server`, check one answer, load it at each concurrency, stop it."""
    base = f"http://127.0.0.1:{server.port}"
    rows = []
    with started(server, log_dir) as proc:
        for concurrency in concurrencies:
            if server.grpc_port:
                load = run_grpc_stream_load if server.grpc_stream else run_grpc_load
                result = load(f"127.0.0.1:{server.grpc_port}", server.grpc_message, concurrency, seconds,
                                       cpu=LOAD_CPU, metrics_url=base + "/metrics")
            else:
                result = run_wrk(base + server.path, server.body, concurrency, seconds, cpu=LOAD_CPU)
            rows.append(Row(server.name, server.model, result, worker_rss_mb(proc.pid)))
            print(f"  {server.name:22} {server.model[:14]:14} c={concurrency:<3} {result.rps:9,.0f} req/s  "
                  f"p50 {result.p50_ms:7.2f} ms  p99 {result.p99_ms:7.2f} ms  errors {result.errors}", flush=True)
    return rows


def run_bench(settings: Settings, *, smoke: bool = False, seconds: float = 15.0, only: list[str] | None = None,
              memory: bool = False, overload: bool = False, monitoring: bool = False, out: Path | None = None,
              command: str = "python -m loadtest.bench") -> BenchReport:
    """Run the comparison (and the optional checks) and write BENCHMARKS.md + benchmarks.png.

    `smoke`: 1 s per concurrency, c=1 and 16, iris only, no chart (the test suite runs it).
    Models are trained into `<home>/bench`, so the user's registry is left alone.
    """
    unknown = sorted(set(only or []) - set(ALL))
    if unknown:
        raise ValueError(f"unknown server(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not found: apt-get install wrk nghttp2-client")
    seconds = 1.0 if smoke else seconds
    concurrencies = [1, 16] if smoke else [1, 16, 64]
    bench_settings = config.replace(settings, home=settings.home / "bench")
    models = prepare_models(bench_settings, heavy=not smoke)
    log_dir = bench_settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    report = BenchReport(commands=[command])
    for server in servers_for(bench_settings, models, free_port):
        if only and server.name not in only:
            continue
        report.rows += measure(server, concurrencies, seconds, log_dir)
        report.notes.setdefault(server.name, server.note)
    iris = models[0]
    if overload:
        server = vigil_server(bench_settings, iris, VIGIL_HTTP, free_port, max_queue_rows=OVERLOAD_QUEUE_ROWS)
        with started(server, log_dir):
            report.overload = overload_check(f"http://127.0.0.1:{server.port}", server.path, server.body,
                                             OVERLOAD_QUEUE_ROWS, seconds=2.0 if smoke else 5.0, cpu=LOAD_CPU)
        print(f"  overload: {report.overload}", flush=True)
    if memory:
        server = vigil_server(bench_settings, iris, VIGIL_HTTP, free_port)
        with started(server, log_dir) as proc:
            report.memory = memory_check(f"http://127.0.0.1:{server.port}{server.path}", server.body, proc.pid,
                                         cpu=LOAD_CPU)
        print(f"  memory: {report.memory} growth {report.memory.growth:+.1%}", flush=True)
    if monitoring:
        _watching(report, bench_settings, iris, log_dir, seconds=3.0 if smoke else 5.0, smoke=smoke)
    add_ratios(report.rows)
    out = out or ROOT / "BENCHMARKS.md"
    out.parent.mkdir(parents=True, exist_ok=True)  # an --out folder that does not exist yet
    chart = None if smoke or not report.rows else plot(report.rows, out.with_name("benchmarks.png"))
    write_markdown(render(report, chart, SERVER_CPU, LOAD_CPU), out)
    print(f"wrote {out}" + (f" and {chart}" if chart else ""))
    return report


def _watching(report: BenchReport, settings: Settings, model: BenchModel, log_dir: Path, seconds: float,
              smoke: bool) -> None:
    """What monitoring costs (off vs defaults, paired) and one monitor under a fleet of producers."""
    from loadtest import monitor_scale, monitoring_cost

    concurrencies = [16] if smoke else [16, 64]
    pairs = 2 if smoke else monitoring_cost.PAIRS
    instances = 1 if smoke else monitoring_cost.INSTANCES
    measured = []
    for instance in range(instances):
        off = vigil_server(settings, model, VIGIL_HTTP, free_port)
        # Its own BentoML home: BentoML empties its Prometheus directory at every start.
        off.env["BENTOML_HOME"] = str(settings.home / "bentoml-unwatched")
        on = monitored_server(settings, model, free_port)
        on.companions[0] = dataclasses.replace(on.companions[0], cpu=LOAD_CPU)  # the monitor: its own deployment
        # Which side starts first swaps every instance, so start order favours neither.
        first, second = (off, on) if instance % 2 == 0 else (on, off)
        with started(first, log_dir) as first_proc, started(second, log_dir) as second_proc:
            off_proc, on_proc = (first_proc, second_proc) if first is off else (second_proc, first_proc)
            monitor_pid = on_proc.companions["monitor"].pid
            measured.append(monitoring_cost.measure_cost(
                (f"http://127.0.0.1:{off.port}{off.path}", off_proc.pid),
                (f"http://127.0.0.1:{on.port}{on.path}", on_proc.pid, monitor_pid),
                off.body, concurrencies, seconds, LOAD_CPU, pairs))
    costs = monitoring_cost.pooled(measured)
    for at in costs:
        print(f"  monitoring cost c={at.concurrency}, {instances} process pair(s) pooled: throughput "
              f"x{at.throughput_ratio:.3f}, CPU/request x{at.cpu_ratio:.3f}", flush=True)
    report.sections.append(monitoring_cost.render(costs, seconds, pairs, instances, measured))
    report.extra_floors += [Floor(*row) for row in monitoring_cost.floors(costs)]
    scale = monitor_scale.run_scale(producers=16, rows=13_500, seconds=10.0 if smoke else 60.0, monitor_cpu=SERVER_CPU)
    print(f"  scale-out: {scale.summary()}", flush=True)
    report.sections.append(monitor_scale.render(scale))
    report.extra_floors += [Floor(*row) for row in monitor_scale.floors(scale)]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadtest.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The harness options (shared with `vigil bench`)."""
    p.add_argument("--smoke", action="store_true", help="1 s per concurrency, iris only (the test suite runs this)")
    p.add_argument("--seconds", type=float, default=15.0, help="seconds per concurrency (default: 15)")
    p.add_argument("--only", help=f"comma-separated servers: {','.join(ALL)}")
    p.add_argument("--memory", action="store_true", help="also check RSS after 200,000 requests vs after 20,000")
    p.add_argument("--overload", action="store_true", help="also check 503 shedding at 256 clients and recovery")
    p.add_argument("--monitoring", action="store_true",
                   help="also measure what monitoring costs (off vs defaults, paired) and 16 producers feeding one monitor")
    p.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"), help="the Markdown report (chart goes next to it)")


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m loadtest.bench [--smoke] [--only a,b] [--memory] [--overload]`."""
    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    try:
        report = run_bench(config.load(), smoke=args.smoke, seconds=args.seconds,
                           only=args.only.split(",") if args.only else None, memory=args.memory,
                           overload=args.overload, monitoring=args.monitoring, out=Path(args.out),
                           command=" ".join(["python -m loadtest.bench", *argv]))
    except (ValueError, RuntimeError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    print(json.dumps([{"server": r.server, "model": r.model, "c": r.result.concurrency, "rps": round(r.result.rps),
                       "errors": r.result.errors, "ratio": r.ratio_to_ceiling} for r in report.rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
