"""`vigil monitor|report|loadtest|bench|soak|demo`: run, watch, load and show the whole thing."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from cli.common import Commands, UserError, load_settings, model_ref
from vigil import config
from vigil.paths import PROJECT_ROOT


def cmd_monitor(args: argparse.Namespace) -> int:
    from monitor import run_monitor

    run_monitor(load_settings(), port=args.port)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from monitor import write_report

    try:
        path = write_report(load_settings(), Path(args.out), model=args.model)
    except (FileNotFoundError, PermissionError) as exc:  # no monitor and no state; a refused API token
        raise UserError(str(exc)) from None
    print(f"drift report: {path}")
    return 0


def cmd_loadtest(args: argparse.Namespace) -> int:
    from loadtest.gate import LoadtestError, run_loadtest

    settings = load_settings()
    host = args.host or f"{settings.scheme}://{settings.host}:{settings.port}"
    try:
        verdict = run_loadtest(settings, host, Path(args.slo), Path(args.out), users=args.users,
                               duration=args.duration, web=args.web)
    except LoadtestError as exc:
        raise UserError(str(exc)) from None
    return verdict.exit_code


def cmd_bench(args: argparse.Namespace) -> int:
    from loadtest.bench import run_bench

    flags = [f"--{name}" for name in ("smoke", "memory", "overload", "monitoring") if getattr(args, name)]
    argv = " ".join(["vigil bench", f"--seconds {args.seconds:g}", *flags, *(["--only", args.only] if args.only else [])])
    try:
        run_bench(load_settings(), smoke=args.smoke, seconds=args.seconds, only=args.only.split(",") if args.only else None,
                  memory=args.memory, overload=args.overload, monitoring=args.monitoring, out=Path(args.out),
                  command=argv)
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from None
    return 0


def cmd_soak(args: argparse.Namespace) -> int:
    from loadtest.soak import SMOKE, run_soak

    shape = ["--smoke"] if args.smoke else [f"--minutes {args.minutes:g}", f"--warmup {args.warmup:g}"]
    argv = " ".join(["vigil soak", *shape, f"--rate {args.rate:g}" if args.rate else f"--load {args.load:g}"])
    options = dict(SMOKE) if args.smoke else {"minutes": args.minutes, "warmup_s": args.warmup}
    try:
        report = run_soak(load_settings(), load=args.load, rate=args.rate, out=Path(args.out), command=argv, **options)
    except (ValueError, RuntimeError, OSError) as exc:
        raise UserError(str(exc)) from None
    return 0 if report.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from demo.story import run_demo

    return run_demo(load_settings(), requests_count=args.requests)




def register(commands: Commands) -> None:
    """Add monitor, report, loadtest, bench, soak and demo."""
    add = commands.add
    p = add("monitor", cmd_monitor, "run the monitor process (HTTP on port 3100 by default)")
    p.add_argument("--port", type=int, help="HTTP port (default: VIGIL_MONITOR_PORT, 3100)")

    p = add("report", cmd_report, "write the HTML drift report")
    p.add_argument("--out", default="drift-report.html", help="output file (default: drift-report.html)")
    p.add_argument("--model", help="registered model name (default: all)")

    p = add(
        "loadtest",
        cmd_loadtest,
        "run Locust against a running service and gate on the SLO (exit 1 on a breach)",
        "Runs Locust headless (or its web UI with --web) against the service, prints a\n"
        "per-endpoint table and the SLO verdict (p50, p99, error rate, throughput from\n"
        "loadtest/slo.yaml), and writes Locust's HTML and CSV reports to --out.",
    )
    p.add_argument("--host", help="service base URL (default: http://VIGIL_HOST:VIGIL_PORT)")
    p.add_argument("--slo", default=str(PROJECT_ROOT / "loadtest" / "slo.yaml"),
                   help="SLO file (default: loadtest/slo.yaml)")
    p.add_argument("--out", default="loadtest-report", help="folder for the reports (default: loadtest-report)")
    p.add_argument("--users", type=int, help="concurrent users (default: the SLO file's)")
    p.add_argument("--duration", type=int, help="seconds to run (default: the SLO file's)")
    p.add_argument("--web", action="store_true", help="open Locust's web UI instead of running headless")

    p = add(
        "bench",
        cmd_bench,
        "benchmark Vigil (HTTP, gRPC, with the monitor) against its peers; write BENCHMARKS.md",
        "Starts each server in turn pinned to core 0 (wrk / h2load on core 1): Vigil HTTP and\n"
        "gRPC, Vigil streaming to the monitor, the seed-style FastAPI app, `mlflow models serve`\n"
        "and a bare Starlette ceiling; iris and a 300-tree forest (batched vs unbatched).\n"
        "Writes a table with the floors checked and a throughput-vs-p99 chart. Needs wrk and h2load.",
    )
    from loadtest.bench import add_arguments

    add_arguments(p)  # the harness's own options, one definition

    p = add(
        "soak",
        cmd_soak,
        "soak Vigil at 80 %% of its measured maximum, HTTP + gRPC, monitor streaming (exit 1 on a missed floor)",
        "Starts Vigil (iris, one worker, gRPC on, streaming to a real monitor) pinned to core 0,\n"
        "measures the maximum of the HTTP + gRPC mix (wrk + h2load on core 1), then offers --load\n"
        "of it at a constant rate for a warm-up plus --minutes. Checks worker RSS growth < 5 %,\n"
        "p99 within VIGIL_SLO_P99_MS in every 10 s, zero errors and a bounded monitor ingest lag;\n"
        "writes soak.png and the Soak section of BENCHMARKS.md. Needs wrk and h2load.",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of load after the warm-up (default: 10)")
    p.add_argument("--load", type=float, default=0.8, help="share of the measured maximum to offer (default: 0.8)")
    p.add_argument("--warmup", type=float, default=60.0, help="warm-up seconds, not judged for RSS (default: 60)")
    p.add_argument("--rate", type=float, help="offer this many req/s in total instead of --load × the maximum")
    p.add_argument("--smoke", action="store_true", help="15 s after a 3 s warm-up (the test suite's run)")
    p.add_argument("--out", default=str(PROJECT_ROOT / "BENCHMARKS.md"), help="report file (default: BENCHMARKS.md)")


    p = add(
        "demo",
        cmd_demo,
        "the whole loop, narrated: serve v1, drift, retrain v2, hot swap, bad v3, automatic rollback",
        "Trains and promotes iris v1, starts the monitor (with its lifecycle worker), a real\n"
        "`bentoml serve` on models:/iris@champion and Prometheus, then plays the loop under\n"
        "load: drift -> retraining -> v2 promoted -> hot swap -> a bad v3 forced -> live\n"
        "quality drop -> automatic rollback to v2. Ends with swap counts and target health.",
    )
    p.add_argument("--requests", type=int, default=200, help="warm-up predictions to send (default: 200)")
