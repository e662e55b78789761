"""`make bench` / `vigil bench`: Vigil against its peers, side by side, in one run.

Each server is started in turn pinned to core 0 (`taskset`) with `wrk` pinned to core 1,
on the same model and payload, at each concurrency; its answer is checked once before it
is timed. The result is a table (BENCHMARKS.md) and a throughput-vs-p99 chart (PNG).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import requests

from loadtest.servers import Server, prepare_models, servers_for
from loadtest.grpc_load import run_grpc_load
from loadtest.wrk import LoadResult, run_wrk
from vigil import config
from vigil.config import Settings
from vigil.procs import free_port, running

ROOT = Path(__file__).resolve().parent.parent
SERVER_CPU, LOAD_CPU = 0, 1


@dataclass
class Row:
    """One table row: a server at one concurrency."""

    server: str
    model: str
    result: LoadResult
    rss_mb: float
    ratio_to_ceiling: float | None = None


@dataclass
class BenchReport:
    rows: list[Row] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def _pinned(argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(SERVER_CPU), *argv] if shutil.which("taskset") else argv


def _tree_rss_mb(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running()) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def measure(server: Server, concurrencies: list[int], seconds: float, log_dir: Path) -> list[Row]:
    """Start `server`, check one answer, run wrk at each concurrency, stop it."""
    base = f"http://127.0.0.1:{server.port}"
    log = log_dir / f"{server.name}.log"
    rows = []
    with running(_pinned(server.argv), server.env, base + server.ready_path, log, timeout=120) as proc:
        answer = requests.post(base + server.path, data=server.body, headers={"content-type": "application/json"}, timeout=10)
        if answer.status_code != 200 or not server.check(answer.json()):
            raise RuntimeError(f"{server.name} answered {answer.status_code}: {answer.text[:300]}")
        for concurrency in concurrencies:
            if server.grpc_port:
                result = run_grpc_load(f"127.0.0.1:{server.grpc_port}", server.grpc_message, concurrency, seconds,
                                       cpu=LOAD_CPU, metrics_url=base + "/metrics")
            else:
                result = run_wrk(base + server.path, server.body, concurrency, seconds, cpu=LOAD_CPU)
            rows.append(Row(server.name, server.model, result, _tree_rss_mb(proc.pid)))
            print(f"  {server.name:24} c={concurrency:<3} {result.rps:9.0f} req/s  p50 {result.p50_ms:7.2f} ms  "
                  f"p99 {result.p99_ms:7.2f} ms  errors {result.errors}", flush=True)
    return rows


def write_markdown(report: BenchReport, out: Path, chart: Path | None) -> None:
    lines = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on this machine ({psutil.cpu_count()} cores): each server pinned "
        f"to core {SERVER_CPU}, `wrk` pinned to core {LOAD_CPU}, one row per request, one worker. "
        "×ceiling = req/s divided by the bare-Starlette ceiling's at the same concurrency, same run.",
        "",
        "| server | model | conc. | req/s | p50 ms | p99 ms | errors | ×ceiling | RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report.rows:
        r = row.result
        ratio = f"{row.ratio_to_ceiling:.2f}" if row.ratio_to_ceiling is not None else "–"
        lines.append(f"| {row.server} | {row.model} | {r.concurrency} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                     f"| {r.errors} | {ratio} | {row.rss_mb:.0f} |")
    if chart is not None:
        lines += ["", f"![throughput vs p99]({chart.name})"]
    lines += ["", "Produced by:", "", "```", *report.commands, "```", ""]
    out.write_text("\n".join(lines))


def add_ratios(rows: list[Row], ceiling: str = "bare-starlette") -> None:
    top = {r.result.concurrency: r.result.rps for r in rows if r.server == ceiling}
    for row in rows:
        if row.result.concurrency in top and top[row.result.concurrency] > 0:
            row.ratio_to_ceiling = row.result.rps / top[row.result.concurrency]


def plot(rows: list[Row], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name in dict.fromkeys(r.server for r in rows):
        points = [(r.result.rps, r.result.p99_ms) for r in rows if r.server == name]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    ax.set_xlabel("requests / second")
    ax.set_ylabel("p99 latency (ms)")
    ax.set_yscale("log")
    ax.set_title("Throughput vs p99 (concurrency 1, 16, 64)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m loadtest.bench [--smoke]`."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds per server (the test suite runs this)")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    parser.add_argument("--only", help="comma-separated server names")
    args = parser.parse_args(argv)
    seconds = 2.0 if args.smoke else args.seconds
    concurrencies = [1, 16] if args.smoke else [1, 16, 64]

    settings = config.load()
    bench_settings = config.replace(settings, home=settings.home / "bench")
    models = prepare_models(bench_settings, heavy=not args.smoke)
    log_dir = bench_settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    report = BenchReport(commands=[" ".join(["python -m loadtest.bench", *(argv or sys.argv[1:])])])
    only = set(args.only.split(",")) if args.only else None
    for server in servers_for(bench_settings, models, free_port):
        if only and server.name not in only:
            continue
        report.rows += measure(server, concurrencies, seconds, log_dir)
    add_ratios(report.rows)
    out = Path(args.out)
    chart = None if args.smoke else plot(report.rows, out.with_name("benchmarks.png"))
    write_markdown(report, out, chart)
    print(f"wrote {out}" + (f" and {chart}" if chart else ""))
    print(json.dumps([{"server": r.server, "c": r.result.concurrency, "rps": round(r.result.rps), "errors": r.result.errors,
                       "ratio": r.ratio_to_ceiling} for r in report.rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
