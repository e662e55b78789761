"""The soak's search for the sustained maximum: constant-rate steps, the watched and the unwatched
server side by side, so the two maxima are measured the same way in the same minutes.

Why both are searched, not only the watched one: the unwatched maximum used to be a closed-loop
burst (wrk + h2load saturating the core) while the watched one was the highest paced step with
>= 99 % answered. The two methods differ on this machine by more than monitoring costs: in both
soaks of 2026-12-02 the watched search stopped on the *answered* criterion (95 % and 82 %), with
the monitor's backlog flat, i.e. at the paced ceiling of serving, not of watching. Comparing like
with like, the unwatched server climbs the same steps, and the steps alternate between the two.

While one side is measured the other side's processes are stopped (SIGSTOP), so an idle agent or
monitor takes nothing from the measured one (an idle agent alone costs ~4 ms of CPU a second).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.bench import LOAD_CPU
from loadtest.grpc_load import GRPC_PATH, frame
from loadtest.servers import Server
from loadtest.soak_probe import PacedLoad, monitor_ingest, service_counters, start_paced
from loadtest.soak_report import CARRIED_FLOOR, RampStep
from vigil.procs import stopped

HTTP_CLIENTS, GRPC_CLIENTS = 48, 16  # the max measurement's concurrency; the soak paces the same clients
DRAIN_S = 30.0  # after the load: how long the monitor may take to ingest the last rows
MAX_DRAIN_S = 180.0  # after a saturation: its backlog is far larger
# Shares of the unwatched burst maximum; finer near the top, where the floor is decided. Both
# servers keep up far below half the burst (every run so far), so the climb starts there.
RAMP_SHARES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
RAMP_STEP_S = 30
# After the climb, this many halvings of the gap between the last kept-up and the first missed
# step, per side: the coarse steps are 5 % of the burst apart, two halvings leave 1.25 %.
REFINE_STEPS = 2
# A step may grow the monitor's backlog by this many seconds of its rows. Each reading sits
# anywhere in the agent's 1-s slice cycle (VIGIL_PROFILE_SLICE_SECONDS), so two readings of a
# pipeline that keeps up differ by up to a slice: 0.5 s alone flagged a step at 40 % load.
BACKLOG_GROWTH_S = 1.5
# A missed step is run once more before it counts: one step's verdict moves by about +-10 % on
# this machine (the 18:10 soak's unwatched side missed 5,179 req/s and then kept up with 5,093),
# so a single unlucky step set a side's maximum.
RETRY_MISSES = True


@dataclass(frozen=True)
class Target:
    """Where the soak sends load and reads counters; `monitor` is "" for the unwatched server."""

    server: Server
    base: str
    monitor: str
    monitor_port: int
    model: tuple[str, str]  # (registered name, version) served: the monitor's labels

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.server.grpc_port}"

    @property
    def watched(self) -> bool:
        return bool(self.monitor)


@dataclass
class Side:
    """One server of the search: its target, the pids to stop while the other is measured, its steps."""

    name: str
    target: Target
    pids: list[int]
    steps: list[RampStep] = field(default_factory=list)

    @property
    def best(self) -> float:
        kept = [st.rps for st in self.steps if st.ok]
        return max(kept) if kept else 0.0

    @property
    def missed(self) -> float | None:
        """The lowest rate it did not keep up with, twice running (None while it kept up with every step)."""
        missed = [st.rps for st in self.steps if not st.ok and not st.retried]
        return min(missed) if missed else None


def paced(target: Target, http_rps: float, grpc_rps: float, seconds: int, folder: Path) -> list[PacedLoad]:
    """Start both constant-rate loads (HTTP /predict and gRPC ModelInfer) from the same clients."""
    server = target.server
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "http.json").write_text(server.body)
    (folder / "grpc.bin").write_bytes(frame(server.grpc_message))
    return [
        start_paced("http", target.base + server.path, folder / "http.json", ["content-type: application/json"],
                    HTTP_CLIENTS, http_rps, seconds, folder, http1=True, cpu=LOAD_CPU),
        start_paced("grpc", f"http://{target.grpc}{GRPC_PATH}", folder / "grpc.bin",
                    ["content-type: application/grpc", "te: trailers"], GRPC_CLIENTS, grpc_rps,
                    seconds, folder, http1=False, cpu=LOAD_CPU),
    ]


def drain(target: Target, timeout: float = DRAIN_S) -> tuple[float, float, float]:
    """Wait until the monitor has ingested every row served (or `timeout`): (served, ingested, seconds)."""
    began = time.monotonic()
    while True:
        served = service_counters(target.base + "/metrics").rows_ok
        ingested, _ = monitor_ingest(target.monitor + "/metrics", *target.model)
        if ingested >= served or time.monotonic() - began > timeout:
            return served, ingested, time.monotonic() - began
        time.sleep(0.5)


def _backlog(target: Target) -> float:
    """Rows served that the monitor has not ingested yet."""
    served = service_counters(target.base + "/metrics").rows_ok
    return served - monitor_ingest(target.monitor + "/metrics", *target.model)[0]


def step(target: Target, rps: float, grpc_share: float, folder: Path, seconds: int) -> RampStep:
    """Offer `rps` for `seconds`: kept up = ≥ 99 % answered and, when watched, the monitor's
    backlog did not grow.

    The backlog (rows served, not yet ingested) is read a third of the way in and at the end,
    before the drain. Why not judge by the catch-up time after the step: with the load gone,
    the profile agent gets the whole core and drains several times faster than it ingests
    under load, so a step that fell behind by 10 s still caught up in ~3 s. A pipeline that
    keeps up holds a constant backlog (one linger + one send); one that does not grows it
    linearly; one slice plus half a second's worth of rows over two thirds of a step is the tolerance.
    """
    loads = paced(target, rps * (1 - grpc_share), rps * grpc_share, seconds, folder)
    time.sleep(seconds / 3)
    early = _backlog(target) if target.watched else 0.0
    for proc in (p for load in loads for p in load.procs):
        proc.wait(timeout=seconds + 60)
    growth_s = (_backlog(target) - early) / rps if target.watched else 0.0
    answered = sum(load.summary().done for load in loads) / (rps * seconds)
    behind = drain(target, timeout=MAX_DRAIN_S)[2] if target.watched else 0.0
    return RampStep(rps, seconds, answered, behind, answered >= CARRIED_FLOOR and growth_s <= BACKLOG_GROWTH_S,
                    growth_s)


def _measure(side: Side, others: list[Side], rps: float, grpc_share: float, folder: Path, seconds: int) -> None:
    """One step of `side` at `rps`; a miss is run once more (RETRY_MISSES) and the second verdict counts."""
    _measure_once(side, others, rps, grpc_share, folder, seconds)
    if RETRY_MISSES and not side.steps[-1].ok:
        side.steps[-1] = dataclasses.replace(side.steps[-1], retried=True)
        _measure_once(side, others, rps, grpc_share, folder, seconds)


def _measure_once(side: Side, others: list[Side], rps: float, grpc_share: float, folder: Path, seconds: int) -> None:
    with stopped([pid for other in others for pid in other.pids]):
        result = step(side.target, rps, grpc_share, folder / f"{side.name}-{len(side.steps)}", seconds)
    side.steps.append(result)
    backlog = f", monitor backlog grew by {result.backlog_growth_s:.2f} s of rows" if side.target.watched else ""
    print(f"soak: {side.name} {rps:,.0f} req/s: {result.answered:.1%} answered{backlog} -> "
          f"{'kept up' if result.ok else 'did not keep up'}", flush=True)


def search(sides: list[Side], burst_rps: float, grpc_share: float, folder: Path,
           step_s: int = RAMP_STEP_S) -> None:
    """Climb RAMP_SHARES of `burst_rps` on every side, the sides' steps alternating (the order
    swaps at each share, so neither side always runs right after a drain), each side until its
    first miss; then halve each side's gap between kept and missed REFINE_STEPS times.

    Why not the burst itself: saturating one core starves the profile agent, which buffers
    and catches up afterwards, so a burst measures serving alone.
    """
    for i, share in enumerate(RAMP_SHARES):
        climbing = [s for s in (sides if i % 2 == 0 else sides[::-1]) if s.missed is None]
        if not climbing:
            break
        for side in climbing:
            _measure(side, [s for s in sides if s is not side], share * burst_rps, grpc_share, folder, step_s)
    for side in sides:
        if not side.best:
            raise RuntimeError(f"{side.name}: did not keep up even at {side.steps[0].rps:,.0f} req/s: {side.steps[0]}")
    for _ in range(REFINE_STEPS):
        for side in sides:
            if side.missed is not None:
                _measure(side, [s for s in sides if s is not side], (side.best + side.missed) / 2, grpc_share,
                         folder, step_s)
