"""The soak's figures, its floors, the Soak section of BENCHMARKS.md and soak.png."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from loadtest.report import Floor, write_between
from loadtest.soak_probe import Sample
from loadtest.wrk import LoadResult

BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
BUCKET_S = 10.0
RSS_FLOOR = 0.05  # worker RSS growth after warm-up
RSS_WINDOW_S = 60.0  # RSS is compared as the median of the first vs the last minute after warm-up
# Requests h2load completed / requests offered. A server that stops answering fails no
# request h2load counts (a dead connection only stops sending), so a shortfall is an error.
CARRIED_FLOOR = 0.99


@dataclass(frozen=True)
class Bucket:
    """Latency of the requests *sent* in [start_s, start_s + 10 s), both protocols together."""

    start_s: float
    requests: int
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Errors:
    """Every way a request can fail, counted separately (some overlap: a 503 is also a rejection)."""

    http: int = 0  # h2load, HTTP: non-2xx + failed + errored + timed out
    grpc: int = 0  # h2load, gRPC: transport failures + answered calls the service did not count as a success
    rejected: int = 0  # vigil_rejected_requests_total increase (both protocols)
    failed_rows: int = 0  # vigil_predictions_total{outcome="error"} increase
    worker_restarts: int = 0  # worker pids that changed during the soak

    @property
    def requests(self) -> int:
        return self.http + self.grpc

    @property
    def none(self) -> bool:
        return not (self.http or self.grpc or self.rejected or self.failed_rows or self.worker_restarts)


@dataclass(frozen=True)
class RssGrowth:
    window_s: float
    first_mb: float  # median over the first window after warm-up
    last_mb: float  # median over the last window
    max_mb: float  # largest sample after warm-up

    @property
    def growth(self) -> float:
        return self.last_mb / self.first_mb - 1.0 if self.first_mb else math.nan

    @property
    def max_growth(self) -> float:
        return self.max_mb / self.first_mb - 1.0 if self.first_mb else math.nan


WATCHED_FLOOR = 0.9
RAMP_NOTE = "the constant-rate steps where ≥ 99 % was answered and the monitor's backlog did not grow"
UNWATCHED_NOTE = "the same steps where ≥ 99 % was answered, interleaved with the watched ones"


@dataclass(frozen=True)
class RampStep:
    """One constant-rate step of the search for the sustained maximum."""

    rps: float  # offered, both protocols
    seconds: int
    answered: float  # share of the offered requests answered
    catch_up_s: float  # after the step: until the monitor had ingested every row served
    ok: bool
    backlog_growth_s: float = 0.0  # growth of rows served-not-ingested during the step, in seconds of its rate
    retried: bool = False  # a miss that was run again at once: the next step's verdict counts instead


@dataclass
class SoakReport:
    """Everything one soak measured; `floors()` are the issue's verdicts."""

    date: str
    cores: int
    load_avg: tuple[float, float, float]  # when the run ended
    max_http: LoadResult
    max_grpc: LoadResult
    max_catch_up_s: float  # after the saturation: until the monitor had ingested every row
    sustained_rps: float  # the highest ramp step serving + monitoring kept up with (see soak.py)
    load: float  # offered = load x sustained_rps
    http_rps: float  # offered
    grpc_rps: float
    http_clients: int
    grpc_clients: int
    warmup_s: float
    duration_s: float  # the whole run, warm-up included
    slo_p99_ms: float
    lag_bound_s: float
    ramp: list[RampStep] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    buckets: list[Bucket] = field(default_factory=list)
    http_requests: int = 0
    grpc_requests: int = 0
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    protocol_p99_ms: dict[str, float] = field(default_factory=dict)
    errors: Errors = field(default_factory=Errors)
    rows_served: float = 0.0
    rows_ingested: float = 0.0
    command: str = ""
    chart: Path | None = None
    # The same server with monitoring off: the highest step of the same search (the floor's
    # denominator), and its closed-loop burst (what the search's steps are shares of)
    unwatched_rps: float = math.nan
    unwatched_burst_rps: float = math.nan
    unwatched_ramp: list[RampStep] = field(default_factory=list)

    @property
    def max_rps(self) -> float:
        return self.max_http.rps + self.max_grpc.rps

    @property
    def grpc_share(self) -> float:
        return self.max_grpc.rps / self.max_rps if self.max_rps else 0.0

    @property
    def requests(self) -> int:
        return self.http_requests + self.grpc_requests

    @property
    def carried(self) -> float:
        """Share of the offered requests that were answered."""
        offered = (self.http_rps + self.grpc_rps) * self.duration_s
        return self.requests / offered if offered else 0.0

    @property
    def rss(self) -> RssGrowth:
        return rss_growth(self.samples, self.warmup_s, self.duration_s)

    @property
    def max_lag_s(self) -> float:
        """Largest lag after warm-up: before it, the gauge still shows the last batch of the
        saturation phase's backlog (it is the lag of the *latest* batch ingested)."""
        lags = [s.lag_s for s in self.samples if s.t >= self.warmup_s and not math.isnan(s.lag_s)]
        return max(lags) if lags else math.nan

    def _steady(self) -> tuple[Sample, Sample] | None:
        post = [s for s in self.samples if s.t >= self.warmup_s]
        return (post[0], post[-1]) if len(post) >= 2 and post[-1].t > post[0].t else None

    @property
    def rows_per_s(self) -> tuple[float, float]:
        """(served, ingested) rows per second after warm-up: ingest keeps up when they match."""
        if (pair := self._steady()) is None:
            return math.nan, math.nan
        a, b = pair
        return (b.rows_served - a.rows_served) / (b.t - a.t), (b.rows_ingested - a.rows_ingested) / (b.t - a.t)

    @property
    def cpu_percent(self) -> dict[str, float]:
        """Share of one core used after warm-up by the worker, its profile agent and the monitor."""
        if (pair := self._steady()) is None:
            return {}
        a, b = pair
        return {name: 100 * (getattr(b, f"{name}_cpu_s") - getattr(a, f"{name}_cpu_s")) / (b.t - a.t)
                for name in ("worker", "agent", "monitor")}

    @property
    def worst_bucket(self) -> Bucket | None:
        return max(self.buckets, key=lambda b: b.p99_ms) if self.buckets else None

    def floors(self) -> list[Floor]:
        return floors(self)

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.floors())


def rss_growth(samples: list[Sample], warmup_s: float, end_s: float) -> RssGrowth:
    """Worker RSS: median of the first vs the last window after warm-up (a minute, or a
    third of the post-warm-up time when that is shorter), and the largest sample."""
    post = [s for s in samples if s.t >= warmup_s]
    if not post:
        return RssGrowth(0.0, math.nan, math.nan, math.nan)
    window = min(RSS_WINDOW_S, max(end_s - warmup_s, 0.0) / 3)
    first = [s.worker_mb for s in post if s.t < warmup_s + window] or [post[0].worker_mb]
    last = [s.worker_mb for s in post if s.t >= end_s - window] or [post[-1].worker_mb]
    return RssGrowth(window, float(np.median(first)), float(np.median(last)), max(s.worker_mb for s in post))


def latency_buckets(frame: pd.DataFrame, duration_s: float) -> tuple[list[Bucket], float, float]:
    """(10-s buckets, overall p50 ms, overall p99 ms) from h2load log rows; failed streams
    (status -1) carry no latency and are counted as errors elsewhere. Buckets start at the
    first request; the h2load processes start a few ms apart, so the requests sent in those
    last ms of the run join the last bucket rather than make a tiny one of their own."""
    done = frame[frame["status"] >= 0]
    if done.empty:
        return [], math.nan, math.nan
    t0 = frame["start_us"].min() / 1e6
    ms = done["latency_us"].to_numpy() / 1000.0
    last = max(0, math.ceil(duration_s / BUCKET_S) - 1)
    bucket = np.minimum(np.floor((done["start_us"].to_numpy() / 1e6 - t0) / BUCKET_S).astype(int), last)
    grouped = pd.DataFrame({"bucket": bucket, "ms": ms}).groupby("bucket")["ms"]
    stats = grouped.agg(["size", lambda v: np.percentile(v, 50), lambda v: np.percentile(v, 99)])
    buckets = [Bucket(float(b * BUCKET_S), int(row.iloc[0]), float(row.iloc[1]), float(row.iloc[2]))
               for b, row in stats.iterrows()]
    p50, p99 = np.percentile(ms, [50, 99])
    return buckets, float(p50), float(p99)


def floors(report: SoakReport) -> list[Floor]:
    """The floors, each with the figure it was judged on."""
    rss, worst, e = report.rss, report.worst_bucket, report.errors
    lag = report.max_lag_s
    return [
        Floor(f"worker RSS growth < {RSS_FLOOR:.0%} after warm-up (median of first vs last {rss.window_s:.0f} s)",
              f"{rss.first_mb:.0f} → {rss.last_mb:.0f} MB ({rss.growth:+.1%}); max {rss.max_mb:.0f} MB "
              f"({rss.max_growth:+.1%})", rss.growth < RSS_FLOOR),
        Floor(f"p99 ≤ {report.slo_p99_ms:g} ms in every {BUCKET_S:.0f}-s bucket, warm-up included",
              f"worst {worst.p99_ms:.1f} ms (at {worst.start_s:.0f} s)" if worst else "no requests",
              worst is not None and worst.p99_ms <= report.slo_p99_ms),
        Floor(f"zero errors (and ≥ {CARRIED_FLOOR:.0%} of the offered requests answered)",
              f"{e.requests} of {report.requests:,} requests (HTTP {e.http}, gRPC {e.grpc}), {e.rejected} rejected, "
              f"{e.failed_rows} failed rows, {e.worker_restarts} worker restarts; {report.carried:.2%} answered",
              e.none and report.carried >= CARRIED_FLOOR),
        Floor(f"sustained maximum with monitoring keeping up ≥ {WATCHED_FLOOR:g} × the unwatched maximum "
              "(the same constant-rate search, monitoring off, in the same run)",
              f"{report.sustained_rps:,.0f} of {report.unwatched_rps:,.0f} req/s "
              f"({report.sustained_rps / report.unwatched_rps:.2f} ×)",
              report.sustained_rps >= WATCHED_FLOOR * report.unwatched_rps),
        Floor(f"monitor ingest lag ≤ {report.lag_bound_s:g} s after warm-up, every served row ingested",
              f"max {lag:.2f} s; {report.rows_served:,.0f} rows served, {report.rows_ingested:,.0f} ingested",
              not math.isnan(lag) and lag <= report.lag_bound_s and report.rows_ingested == report.rows_served),
    ]


def render(report: SoakReport) -> str:
    """The Soak section (without its markers)."""
    r, rss = report, report.rss
    served, ingested = r.rows_per_s
    run_s = r.duration_s - r.warmup_s
    lines = [
        "## Soak",
        "",
        f"Measured {r.date} on this machine ({r.cores} cores, load average "
        f"{', '.join(f'{x:.2f}' for x in r.load_avg)} when the run ended). One worker serving iris with the "
        "monitor streaming (every batch profiled and sent): the server and its profile agent pinned to core 0; "
        "the monitor (its own deployment in production) and the load generators (`h2load`, constant rate) to core 1.",
        "",
        f"- maximum of the mix: {r.max_rps:,.0f} req/s (HTTP c={r.max_http.concurrency} {r.max_http.rps:,.0f} + "
        f"gRPC c={r.max_grpc.concurrency} {r.max_grpc.rps:,.0f}; gRPC share {r.grpc_share:.0%}) for "
        f"{r.max_http.seconds:g} s; the profile agent, starved meanwhile, then needed {r.max_catch_up_s:.0f} s "
        "to catch up, so that burst is serving alone",
        f"- unwatched burst (the same server with monitoring off, the same mix, {r.max_http.seconds:g} s): "
        f"{r.unwatched_burst_rps:,.0f} req/s; the search's steps are shares of it",
        f"- unwatched maximum (monitoring off): {r.unwatched_rps:,.0f} req/s, the highest of {UNWATCHED_NOTE} "
        f"({_steps(r.unwatched_ramp)})",
        f"- sustained maximum (serving + monitoring keeping up): {r.sustained_rps:,.0f} req/s "
        f"({r.sustained_rps / r.unwatched_rps:.2f} × the unwatched maximum, "
        f"{r.sustained_rps / r.unwatched_burst_rps:.2f} × the unwatched burst), the highest of {RAMP_NOTE} "
        f"({_steps(r.ramp, backlog=True)})",
        f"- offered: {r.load:.0%} of the sustained maximum = {r.http_rps + r.grpc_rps:,.0f} req/s (HTTP {r.http_rps:,.0f} from "
        f"{r.http_clients} clients, gRPC {r.grpc_rps:,.0f} from {r.grpc_clients}), for {r.duration_s / 60:.1f} min "
        f"({r.warmup_s:.0f} s warm-up + {run_s / 60:.1f} min)",
        f"- requests: {r.requests:,} ({r.http_requests:,} HTTP, {r.grpc_requests:,} gRPC), errors: "
        f"{r.errors.requests}",
        f"- latency: p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms overall; worst {BUCKET_S:.0f}-s p99 "
        f"{r.worst_bucket.p99_ms if r.worst_bucket else math.nan:.2f} ms; p99 by protocol: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in r.protocol_p99_ms.items()),
        f"- worker RSS: {rss.first_mb:.0f} MB at warm-up end, {rss.last_mb:.0f} MB at the end "
        f"({rss.growth:+.1%}), max {rss.max_mb:.0f} MB",
        f"- monitor: max ingest lag {r.max_lag_s:.2f} s after warm-up; rows served {served:,.0f}/s, ingested "
        f"{ingested:,.0f}/s; in total {r.rows_served:,.0f} served, {r.rows_ingested:,.0f} ingested after the drain",
        "- CPU after warm-up: " + ", ".join(f"{k} {v:.0f} %" for k, v in r.cpu_percent.items()) + " of a core",
        "",
        "| floor | measured | met |",
        "|---|---|---|",
        *(f"| {f.name} | {f.value} | {'yes' if f.ok else '**no**'} |" for f in r.floors()),
    ]
    if r.chart is not None:
        lines += ["", f"![soak: worker RSS, p50/p99 and monitor ingest lag over time]({r.chart.name})"]
    lines += ["", "Produced by:", "", "```", r.command, "```"]
    return "\n".join(lines)


def _steps(steps: list[RampStep], backlog: bool = False) -> str:
    """The steps in the order they ran, for the text: rate, answered, backlog growth, verdict."""
    if not steps:
        return "no search: --rate"
    each = ", ".join(f"{st.rps:,.0f} ({st.answered:.1%} answered"
                     + (f", backlog {st.backlog_growth_s:+.1f} s" if backlog else "")
                     + f"{'' if st.ok else (': no, retried' if st.retried else ': no')})" for st in steps)
    return f"{steps[0].seconds} s each: {each}"


def write_section(text: str, out: Path) -> None:
    """The Soak section, between its markers in `out`."""
    write_between(text, out, BEGIN, END)


def plot(report: SoakReport, out: Path) -> Path:
    """Three panels over time: RSS, p50/p99 per bucket, monitor ingest lag; warm-up shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = report.samples
    t = [x.t for x in s]
    fig, (rss_ax, lat_ax, lag_ax) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    rss_ax.plot(t, [x.worker_mb for x in s], label="worker")
    rss_ax.plot(t, [x.agent_mb for x in s], label="profile agent")
    rss_ax.plot(t, [x.monitor_mb for x in s], label="monitor", linestyle="--")
    rss_ax.set_ylabel("RSS (MB)")
    mid = [b.start_s + BUCKET_S / 2 for b in report.buckets]
    lat_ax.plot(mid, [b.p50_ms for b in report.buckets], marker=".", label="p50")
    lat_ax.plot(mid, [b.p99_ms for b in report.buckets], marker=".", label="p99")
    lat_ax.axhline(report.slo_p99_ms, color="red", linestyle=":", label=f"SLO {report.slo_p99_ms:g} ms")
    lat_ax.set_ylabel(f"latency per {BUCKET_S:.0f} s (ms)")
    lag_ax.plot(t, [x.lag_s for x in s], label="ingest lag")
    lag_ax.axhline(report.lag_bound_s, color="red", linestyle=":", label=f"bound {report.lag_bound_s:g} s")
    lag_ax.set_ylabel("monitor lag (s)")
    lag_ax.set_xlabel("seconds since the load started")
    for ax in (rss_ax, lat_ax, lag_ax):
        ax.axvspan(0, report.warmup_s, color="grey", alpha=0.15, label="warm-up" if ax is rss_ax else None)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    offered = report.http_rps + report.grpc_rps
    fig.suptitle(f"Soak: {offered:,.0f} req/s ({report.load:.0%} of the sustained {report.sustained_rps:,.0f}), "
                 "HTTP + gRPC, monitor streaming")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
