"""What watching costs: the same server with monitoring off and with Vigil's defaults, side by side.

Both servers run at once, pinned to the server core (each with its own worker, and the
watched one with its profile agent and prediction log); the monitor runs on the load
core, as its own deployment would. Short runs alternate off, on, on, off, off, on... at each
concurrency, so the machine's drift hits both alike, and the side not loaded is stopped
(SIGSTOP) meanwhile; each figure is the median over the pairs. One run of each side
first is thrown away, and then the watched side is left idle until its agents and monitor
have gone quiet: an agent's start (its whylogs import, ~0.8 s of CPU) is paid once per
process, not per request, and niced behind a loaded worker it took over 16 s of wall time.
CPU per request is the CPU time of the server's whole process tree (and, when watched, the
monitor's) divided by the requests answered in that run; the watched tree is also split
into its worker and its agent.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil

from loadtest.soak_probe import serving_tree
from loadtest.wrk import run_wrk
from vigil.procs import stopped

PAIRS = 3
# Fresh processes this many times: two identical unwatched servers measured this way (an A/A)
# came out 0.950 x and, with both started again, 1.057 x in throughput, and on a noisier day
# 0.97-0.93 x three times running: one process's own luck (memory layout, hash seed) moves the
# ratio by about the floor's 5 %, more than the pairs within one process pair do. So the
# budget goes to more process pairs (6 x 3 pairs, rather than 3 x 5), pooled, with the start
# order swapped every instance.
INSTANCES = 6
QUIET_CPU_S = 0.01  # "quiet": less than this much CPU in the last half second


@dataclass(frozen=True)
class Run:
    rps: float
    requests: int
    errors: int
    p99_ms: float
    server_cpu_s: float  # the whole tree: `bentoml serve`, its worker, the worker's agent
    monitor_cpu_s: float
    agent_cpu_s: float = 0.0  # the agents' part of server_cpu_s

    @property
    def cpu_us_per_request(self) -> float:
        return (self.server_cpu_s + self.monitor_cpu_s) / max(1, self.requests) * 1e6

    def us_per_request(self, cpu_s: float) -> float:
        return cpu_s / max(1, self.requests) * 1e6


@dataclass
class CostAt:
    """The pairs at one concurrency."""

    concurrency: int
    off: list[Run] = field(default_factory=list)
    on: list[Run] = field(default_factory=list)

    def _ratio(self, get: Callable[[Run], float]) -> float:
        return statistics.median(get(b) / get(a) for a, b in zip(self.off, self.on))

    @property
    def throughput_ratio(self) -> float:
        return self._ratio(lambda r: r.rps)

    @property
    def cpu_ratio(self) -> float:
        return self._ratio(lambda r: r.cpu_us_per_request)

    def median(self, runs: list[Run], get: Callable[[Run], float]) -> float:
        return statistics.median(get(r) for r in runs)


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def one_run(url: str, body: str, concurrency: int, seconds: float, server_pid: int, monitor_pid: int | None,
            load_cpu: int) -> Run:
    """Load one server with wrk; the CPU its process tree (and the monitor) spent meanwhile."""
    tree = _tree(server_pid)  # the agent is a child of the worker, the worker of `bentoml serve`
    agents = serving_tree(server_pid)[1]
    monitor = [psutil.Process(monitor_pid)] if monitor_pid else []
    before = [_cpu_seconds(group) for group in (tree, monitor, agents)]
    result = run_wrk(url, body, concurrency, seconds, cpu=load_cpu)
    server, monitor_s, agent = (_cpu_seconds(group) - b for group, b in zip((tree, monitor, agents), before))
    return Run(result.rps, result.requests, result.errors, result.p99_ms, server, monitor_s, agent)


def wait_quiet(pids: list[int], timeout: float = 60.0) -> float:
    """Wait until these processes (and their children) spend almost no CPU; returns the seconds waited."""
    start = time.monotonic()
    groups = [_tree(pid) for pid in pids]
    last = sum(_cpu_seconds(group) for group in groups)
    while time.monotonic() - start < timeout:
        time.sleep(0.5)
        now = sum(_cpu_seconds(group) for group in groups)
        if now - last < QUIET_CPU_S:
            break
        last = now
    return time.monotonic() - start


def measure_cost(off: tuple[str, int], on: tuple[str, int, int], body: str, concurrencies: list[int],
                 seconds: float, load_cpu: int, pairs: int = PAIRS) -> list[CostAt]:
    """Alternate runs of the `off` server (url, pid) and the `on` server (url, pid, monitor pid)."""
    out = []
    warm_up = [(off[0], off[1], None, [on[1], on[2]]), (on[0], on[1], on[2], [off[1]])]
    for url, pid, monitor_pid, idle in warm_up:  # not counted
        with stopped(idle):
            one_run(url, body, concurrencies[0], seconds, pid, monitor_pid, load_cpu)
    waited = wait_quiet([on[1], on[2]])
    print(f"  monitoring cost: the watched side went quiet {waited:.1f} s after its warm-up", flush=True)
    for concurrency in concurrencies:
        at = CostAt(concurrency)
        for pair in range(pairs):
            # The order swaps every pair, so a drift of the machine within a pair favours neither;
            # the side not loaded is stopped, so it takes nothing from the one measured, and the
            # agent's work left over from its run (the last flush, a compaction) is done, and
            # counted, in its own next run rather than on the other side's time.
            sides = [(at.off, off[0], off[1], None, [on[1], on[2]]), (at.on, on[0], on[1], on[2], [off[1]])]
            for runs, url, pid, monitor_pid, idle in sides if pair % 2 == 0 else sides[::-1]:
                with stopped(idle):
                    runs.append(one_run(url, body, concurrency, seconds, pid, monitor_pid, load_cpu))
        print(f"  monitoring cost c={concurrency}: throughput x{at.throughput_ratio:.3f}, CPU/request "
              f"x{at.cpu_ratio:.3f} (medians of {pairs} pairs)", flush=True)
        out.append(at)
    return out


def pooled(instances: list[list[CostAt]]) -> list[CostAt]:
    """The pairs of several process pairs, pooled per concurrency (medians then span them all)."""
    out: dict[int, CostAt] = {}
    for costs in instances:
        for at in costs:
            into = out.setdefault(at.concurrency, CostAt(at.concurrency))
            into.off += at.off
            into.on += at.on
    return list(out.values())


def render(costs: list[CostAt], seconds: float, pairs: int, instances: int = 1,
           by_instance: list[list[CostAt]] | None = None) -> list[str]:
    """The BENCHMARKS.md section: the table (and, given `by_instance`, each process pair's ratios)."""
    lines = [
        "### What watching costs",
        "",
        f"The same one-worker server, monitoring off (`VIGIL_PROFILE_STREAM=0`, `VIGIL_PREDICTION_LOG=off`) and "
        f"with Vigil's defaults (every row profiled in slices, streamed to a real monitor, written to the "
        f"prediction log), both started, one warm-up run each (the watched side then left idle until its agent "
        f"and monitor are quiet), then alternated {pairs} times per concurrency (the "
        f"order swapping every pair, the side not loaded stopped), {seconds:g} s per run; all of it {instances} "
        f"time(s) over with fresh processes, the pairs pooled; medians. "
        "CPU per request: the server's whole process tree (worker, agent) plus the monitor, per request answered; "
        "the watched side also split into worker + agent + monitor (medians of each, so they need not add up).",
        "",
        "| conc. | off req/s | on req/s | × off | off CPU µs/req | on CPU µs/req (worker + agent + monitor) | × off "
        "| on p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for at in costs:
        on_worker = at.median(at.on, lambda r: r.us_per_request(r.server_cpu_s - r.agent_cpu_s))
        on_agent = at.median(at.on, lambda r: r.us_per_request(r.agent_cpu_s))
        on_monitor = at.median(at.on, lambda r: r.us_per_request(r.monitor_cpu_s))
        lines.append(
            f"| {at.concurrency} | {at.median(at.off, lambda r: r.rps):,.0f} | {at.median(at.on, lambda r: r.rps):,.0f} "
            f"| {at.throughput_ratio:.3f} | {at.median(at.off, lambda r: r.cpu_us_per_request):.0f} "
            f"| {at.median(at.on, lambda r: r.cpu_us_per_request):.0f} ({on_worker:.0f} + {on_agent:.1f} + {on_monitor:.1f}) "
            f"| {at.cpu_ratio:.3f} | {at.median(at.on, lambda r: r.p99_ms):.2f} |")
    if by_instance and len(by_instance) > 1:
        lines.append("")
        for at in costs:
            each = [one for costs_of in by_instance for one in costs_of if one.concurrency == at.concurrency]
            lines.append(f"Each process pair at c={at.concurrency} (throughput × off / CPU per request × off): "
                         + ", ".join(f"{one.throughput_ratio:.3f} / {one.cpu_ratio:.3f}" for one in each) + ".")
    return lines


def floors(costs: list[CostAt]) -> list[tuple[str, str, bool]]:
    """(floor, measured, met) rows for the floors table."""
    rows = []
    for at in costs:
        rows.append((f"monitoring on (defaults) vs off, c={at.concurrency}: throughput ≥ 0.95 ×",
                     f"{at.throughput_ratio:.3f} ×", at.throughput_ratio >= 0.95))
        rows.append((f"monitoring on vs off, c={at.concurrency}: CPU per request (service + monitor) ≤ 1.10 ×",
                     f"{at.cpu_ratio:.3f} ×", at.cpu_ratio <= 1.10))
    return rows


__all__ = ["CostAt", "Run", "floors", "measure_cost", "pooled", "render", "wait_quiet"]
