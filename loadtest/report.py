"""BENCHMARKS.md and benchmarks.png from one harness run, with the issue's floors checked."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from loadtest.checks import MemoryResult, OverloadResult
from loadtest.servers import CEILING, GRPC_CEILING, SEED, VIGIL_GRPC, VIGIL_GRPC_STREAM, VIGIL_HTTP, VIGIL_UNBATCHED
from loadtest.wrk import LoadResult


@dataclass
class Row:
    """One table row: a server at one concurrency."""

    server: str
    model: str
    result: LoadResult
    rss_mb: float
    ratio_to_ceiling: float | None = None


@dataclass(frozen=True)
class Floor:
    name: str
    value: str
    ok: bool


@dataclass
class BenchReport:
    rows: list[Row] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    memory: MemoryResult | None = None
    overload: OverloadResult | None = None
    notes: dict[str, str] = field(default_factory=dict)  # server -> how it was configured
    extra_floors: list[Floor] = field(default_factory=list)  # from the monitoring sections below
    sections: list[list[str]] = field(default_factory=list)  # Markdown sections after the main table


def add_ratios(rows: list[Row], ceiling: str = CEILING) -> None:
    top = {(r.model, r.result.concurrency): r.result.rps for r in rows if r.server == ceiling}
    for row in rows:
        rps = top.get((row.model, row.result.concurrency), 0.0)
        if rps > 0:
            row.ratio_to_ceiling = row.result.rps / rps


def _find(rows: list[Row], server: str, concurrency: int, heavy: bool = False) -> LoadResult | None:
    for row in rows:
        if row.server == server and row.result.concurrency == concurrency and ("RandomForest" in row.model) == heavy:
            return row.result
    return None


def floors(report: BenchReport, top: int = 64) -> list[Floor]:
    """The issue's floors that this run has the figures for."""
    rows, out = report.rows, []
    http, bare, seed = (_find(rows, s, top) for s in (VIGIL_HTTP, CEILING, SEED))
    if http and bare:
        out.append(Floor(f"Vigil HTTP ≥ 0.35 × ceiling at c={top}", f"{http.rps / bare.rps:.2f} ×", http.rps >= 0.35 * bare.rps))
    if http and seed:
        out.append(Floor(f"Vigil HTTP ≥ 8 × seed app at c={top}", f"{http.rps / seed.rps:.1f} ×", http.rps >= 8 * seed.rps))
    if http:
        out.append(Floor(f"Vigil HTTP p99 ≤ 25 ms at c={top}, zero errors",
                         f"{http.p99_ms:.1f} ms, {http.errors} errors", http.p99_ms <= 25 and http.errors == 0))
    one = _find(rows, VIGIL_HTTP, 1)
    if one:
        out.append(Floor("Vigil HTTP p99 ≤ 2 ms at c=1", f"{one.p99_ms:.2f} ms", one.p99_ms <= 2))
    grpc = _find(rows, VIGIL_GRPC, top)
    if grpc and http:
        out.append(Floor(f"gRPC ≥ HTTP throughput at c={top}", f"{grpc.rps:,.0f} vs {http.rps:,.0f} req/s",
                         grpc.rps >= http.rps))
    stream, bare_grpc = _find(rows, VIGIL_GRPC_STREAM, top), _find(rows, GRPC_CEILING, top)
    if stream and http:
        out.append(Floor(f"gRPC streaming ≥ HTTP throughput at c={top}, p99 ≤ 25 ms, zero errors",
                         f"{stream.rps:,.0f} vs {http.rps:,.0f} req/s, p99 {stream.p99_ms:.1f} ms, "
                         f"{stream.errors} errors",
                         stream.rps >= http.rps and stream.p99_ms <= 25 and stream.errors == 0))
    if grpc and bare_grpc:
        out.append(Floor(f"gRPC unary ≥ 0.8 × bare grpcio at c={top}, p99 ≤ 25 ms",
                         f"{grpc.rps / bare_grpc.rps:.2f} ×, p99 {grpc.p99_ms:.1f} ms",
                         grpc.rps >= 0.8 * bare_grpc.rps and grpc.p99_ms <= 25))
    batched, unbatched = _find(rows, VIGIL_HTTP, top, heavy=True), _find(rows, VIGIL_UNBATCHED, top, heavy=True)
    if batched and unbatched and unbatched.rps > 0:
        out.append(Floor(f"RandomForest(300): batched ≥ 3 × unbatched at c={top}",
                         f"{batched.rps / unbatched.rps:.1f} ×", batched.rps >= 3 * unbatched.rps))
    if report.overload:
        o = report.overload
        out.append(Floor(f"overload (c={o.overload.concurrency}, queue ≤ {o.queue_limit} rows): 503s, then recovers",
                         f"{o.shed:,} shed of {o.overload.requests:,}, p99 {o.overload.p99_ms:.0f} ms; "
                         f"then {o.recovery.errors} errors at c=16", o.shed > 0 and o.recovered))
    if report.memory:
        m = report.memory
        out.append(Floor(f"memory flat: RSS after {m.total_requests:,} within 10 % of after {m.early_requests:,}",
                         f"{m.early_rss_mb:.0f} → {m.total_rss_mb:.0f} MB ({m.growth:+.1%})", abs(m.growth) <= 0.10))
    return out + report.extra_floors


def _table(report: BenchReport) -> list[str]:
    lines = ["| server | model | conc. | req/s | p50 ms | p99 ms | errors | ×ceiling | worker RSS MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in report.rows:
        r = row.result
        ratio = f"{row.ratio_to_ceiling:.2f}" if row.ratio_to_ceiling is not None else "–"
        lines.append(f"| {row.server} | {row.model} | {r.concurrency} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
                     f"| {r.errors} | {ratio} | {row.rss_mb:.0f} |")
    return lines


def render(report: BenchReport, chart: Path | None, server_cpu: int, load_cpu: int) -> str:
    """The generated part of BENCHMARKS.md."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} on this machine ({psutil.cpu_count()} cores, load average "
        f"{load} when the run ended): each server pinned to core {server_cpu}, the load generator (`wrk`; `h2load` "
        f"for gRPC) pinned to core {load_cpu}, one row per request, one worker. ×ceiling = req/s divided by the "
        "bare-Starlette ceiling's at the same concurrency, same run.",
        "",
        *_table(report),
    ]
    if report.notes:
        lines += ["", "Vigil rows: " + "; ".join(f"`{k}`: {v}" for k, v in report.notes.items() if v) + "."]
    found = floors(report)
    if found:
        lines += ["", "| floor | measured | met |", "|---|---|---|"]
        lines += [f"| {f.name} | {f.value} | {'yes' if f.ok else '**no**'} |" for f in found]
    for section in report.sections:
        lines += ["", *section]
    if chart is not None:
        lines += ["", f"![throughput vs p99]({chart.name})"]
    lines += ["", "Produced by:", "", "```", *report.commands, "```"]
    return "\n".join(lines)


# The hand-written part of BENCHMARKS.md (analysis, profile) lives above this marker and
# survives a re-run; the generated tables replace everything below it.
MARKER = "<!-- generated by loadtest.bench: everything below is rewritten by `make bench` -->"


def write_between(text: str, out: Path, begin: str, end: str) -> None:
    """Put a section kept apart from the bench's tables (the soak's, the drift bench's)
    between its markers: replaced in place when present, otherwise inserted just above the
    bench's marker (so `make bench` keeps it)."""
    block = f"{begin}\n{text}\n{end}"
    current = out.read_text() if out.exists() else ""
    if begin in current and end in current:
        head, rest = current.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    elif MARKER in current:
        head, rest = current.split(MARKER, 1)
        new = f"{head.rstrip()}\n\n{block}\n\n{MARKER}{rest}"
    else:
        # the bench rewrites a file without its marker from scratch: add the marker after us
        new = f"{current.rstrip() or '# Benchmarks'}\n\n{block}\n\n{MARKER}\n"
    out.write_text(new)


def write_markdown(text: str, out: Path) -> None:
    head = "# Benchmarks\n"
    if out.exists() and MARKER in out.read_text():
        head = out.read_text().split(MARKER)[0].rstrip() + "\n"
    out.write_text(f"{head}\n{MARKER}\n\n{text}\n")


def plot(rows: list[Row], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for key in dict.fromkeys((r.server, r.model) for r in rows):
        points = [(r.result.rps, r.result.p99_ms) for r in rows if (r.server, r.model) == key]
        label = key[0] if "iris" in key[1] else f"{key[0]} ({key[1].split()[-1]})"
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
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
