"""The demo's lifecycle story, narrated as it happens.

v1 serves under load → drift injected → the monitor flags it → its lifecycle worker
retrains (v2 registered, converted, gated, promoted) → the service follows the
champion alias to v2 → a bad v3 (shuffled labels) is forced to production → live
labels show its quality drop → the worker rolls back to v2 → the service follows.
Nothing here moves the registry except forcing v3: everything else is the monitor's
worker reacting to what it sees.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

from lifecycle import stages as S
from lifecycle.audit import read_audit
from vigil.auth import auth_headers, predict_headers
from vigil.config import Settings
from demo.stack import Stack, hot_swap_available
from demo.traffic import Iris, LabelFeed, LoadLoop, shifted_frame
from vigil.registry import connect

Say = Callable[[str], None]


class DemoError(RuntimeError):
    """The story did not unfold as expected (with what was seen instead)."""


@dataclass
class Swap:
    """The service moving from one version to another under load."""

    to_version: str
    moved_at: float  # the registry move
    seen_at: float  # first answer from the new version
    requests: int  # answered between the move and a second after the first new answer
    failures: int
    live: bool  # hot swap (True) or a service restart (build without hot swap)

    @property
    def seconds(self) -> float:
        return self.seen_at - self.moved_at


@dataclass
class LoopResult:
    retrained: str = ""
    forced: str = ""
    rolled_back_to: str = ""
    swaps: list[Swap] = field(default_factory=list)
    requests: int = 0
    failures: int = 0
    retrain_triggers: int = 0


class AuditTail:
    """New records of $VIGIL_HOME/lifecycle/audit.jsonl since the last call."""

    def __init__(self, settings: Settings) -> None:
        self.settings, self.seen = settings, len(read_audit(settings))

    def new(self) -> list[dict[str, Any]]:
        records = read_audit(self.settings)
        fresh, self.seen = records[self.seen:], len(records)
        return fresh


def run_loop(settings: Settings, stack: Stack, iris: Iris, name: str, say: Say, step: Say) -> LoopResult:
    """Play the whole loop against the running stack; returns what happened."""
    result = LoopResult()
    tail = AuditTail(settings)
    loop = LoadLoop(stack.base, iris, headers=predict_headers(settings)).start()
    labels = LabelFeed(loop, stack.monitor_url, headers=auth_headers(settings)).start()
    window = settings.monitor_window_seconds
    try:
        step(f"v1 serves under load ({loop.clients} clients); labels arrive every second")
        time.sleep(window)
        say(f"{loop.stats.ok} requests answered by v{stack.served_version()}, {loop.stats.failed} failed")

        step(f"drift injected: inputs shift by {0.8} std; the monitor's worker polls every "
             f"{settings.lifecycle_poll_seconds}s and retrains after {settings.retrain_windows} drifted windows")
        loop.drifting = True
        trigger = _wait_audit(tail, say, lambda r: r["policy"] == "retrain" and r["action"] == "retrain"
                              and "executed" not in r, timeout=60 + 6 * window, what="a retraining trigger")
        say(f"monitor flagged it: {trigger['reason']}")
        _print_latest_drift(settings, stack.monitor_url, name, "1", say)

        step("retraining in the monitor's worker: train on reference + recent labelled data, convert, gate")
        move = _wait_move(settings, name, lambda m: m.kind == S.RETRAIN and m.to_stage == S.PRODUCTION, tail, say,
                          timeout=180, what="the retrained version's promotion to production")
        result.retrained = move.version
        say(f"registered v{move.version}; {move.describe()}")
        _print_gate(settings, name, move.version, say)
        result.swaps.append(_swap(stack, loop, move, say))

        step("a bad v3 is forced to production (trained on shuffled labels)")
        result.forced = _force_bad_version(settings, iris, name, say)
        bad = _last_move(settings, name, lambda m: m.version == result.forced and m.to_stage == S.PRODUCTION)
        assert bad is not None  # just recorded by _force_bad_version
        result.swaps.append(_swap(stack, loop, bad, say))

        step(f"live quality drops: rollback after {settings.rollback_windows} windows with >= "
             f"{settings.rollback_min_labels} labels, {settings.rollback_margin} below v{result.retrained}; "
             f"cooldown {settings.rollback_cooldown_seconds}s")
        back = _wait_move(settings, name, lambda m: m.kind == S.AUTO and m.to_stage == S.PRODUCTION, tail, say,
                          timeout=120 + 6 * window, what="the automatic rollback")
        result.rolled_back_to = back.version
        say(f"automatic rollback: {back.describe()}")
        result.swaps.append(_swap(stack, loop, back, say))
    finally:
        stats = loop.stop()
        labels.stop()  # after the loop: its last answers get their labels too
    result.requests, result.failures = stats.ok + stats.failed, stats.failed
    result.retrain_triggers = sum(1 for r in read_audit(settings) if r["policy"] == "retrain"
                                  and r["action"] == "retrain" and "executed" not in r)
    if stats.errors:
        say(f"first failure: {stats.errors[0]}")
    return result


def _wait_audit(tail: AuditTail, say: Say, match: Callable[[dict[str, Any]], bool], timeout: float,
                what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    noted: set[str] = set()
    while time.monotonic() < deadline:
        for record in tail.new():
            _narrate(record, noted, say)
            if match(record):
                return record
        time.sleep(0.3)
    raise DemoError(f"no {what} within {timeout:.0f}s; see the monitor log and $VIGIL_HOME/lifecycle/audit.jsonl")


def _narrate(record: dict[str, Any], noted: set[str], say: Say) -> None:
    """Print worker decisions worth seeing once: guard rails holding, refusals, actions."""
    reason = record.get("reason", "")
    for marker in ("cooldown", "debounced", "already triggered", "refused"):
        if marker in reason and marker not in noted:
            noted.add(marker)
            say(f"worker holds ({record['policy']}): {reason}")
    if record.get("error"):
        say(f"worker error: {record['error']}")


def _last_move(settings: Settings, name: str, match: Callable[[S.Move], bool]) -> S.Move | None:
    found = [m for m in S.history(connect(settings), name) if match(m)]
    return found[-1] if found else None


def _wait_move(settings: Settings, name: str, match: Callable[[S.Move], bool], tail: AuditTail, say: Say,
               timeout: float, what: str) -> S.Move:
    deadline = time.monotonic() + timeout
    noted: set[str] = set()
    while time.monotonic() < deadline:
        move = _last_move(settings, name, match)
        if move is not None:
            return move
        for record in tail.new():
            _narrate(record, noted, say)
        time.sleep(0.5)
    raise DemoError(f"no {what} within {timeout:.0f}s; see {settings.home / 'logs' / 'demo-monitor.log'}")


def _swap(stack: Stack, loop: LoadLoop, move: S.Move, say: Say) -> Swap:
    """Wait for the service to answer with the new champion and count what happened meanwhile."""
    live = hot_swap_available()
    loop.paused = not live  # a restart refuses connections; only a live swap is judged under load
    try:
        stack.follow_champion(move.version, timeout=60)
    finally:
        loop.paused = False
    deadline = time.monotonic() + 30
    while (seen := loop.stats.first_answer(move.version, move.at)) is None:
        if time.monotonic() > deadline:
            raise DemoError(f"no answer from v{move.version} reached the clients after the alias moved")
        time.sleep(0.1)
    time.sleep(1.0)  # count the second after the first new answer too: stragglers on the old model
    count, failed = loop.stats.between(move.at, seen + 1.0)
    swap = Swap(move.version, move.at, seen, count, failed, live)
    how = "hot-swapped" if live else "restarted (this build has no hot swap yet)"
    say(f"service {how} to v{move.version} {swap.seconds:.1f}s after the alias moved: "
        f"{count} requests during the swap, {failed} failed")
    return swap


def _force_bad_version(settings: Settings, iris: Iris, name: str, say: Say) -> str:
    from rich.console import Console

    from converter import convert_version
    from lifecycle.errors import GateRefused
    from lifecycle.moves import promote
    from lifecycle.render import verdict_table
    from lifecycle.training import train

    csv = settings.home / "recent" / "shuffled.csv"
    shifted_frame(iris, seed=3, shuffle_labels=True).to_csv(csv, index=False)
    trained = train(settings, csv=csv, target="target", name=name)
    convert_version(settings, f"models:/{name}/{trained.version}", progress=False)
    say(f"registered and converted v{trained.version}: {trained.summary}")
    try:
        promote(settings, name, trained.version, S.PRODUCTION, reason="demo: a bad model")
    except GateRefused as exc:
        Console().print(verdict_table(exc.verdict))  # type: ignore[arg-type]
        say(f"gate refused: {exc}")
    move = promote(settings, name, trained.version, S.PRODUCTION, reason="demo: forced past the gate", force=True)
    say(f"vigil promote {name} {trained.version} --to production --force  ->  {move.describe()}")
    return trained.version


def _print_gate(settings: Settings, name: str, version: str, say: Say) -> None:
    from rich.console import Console

    from lifecycle import gate
    from lifecycle.moves import previous_champion
    from lifecycle.render import verdict_table

    client = connect(settings)
    candidate = client.get_model_version(name, version)
    previous = previous_champion(S.history(client, name), version)
    champion = client.get_model_version(name, previous) if previous else None
    metric = gate.gate_metric(settings, candidate)
    run = client.get_run(candidate.run_id).data.metrics
    recent = (run.get(f"recent_{metric}"), run.get(f"champion_recent_{metric}"))
    verdict = gate.evaluate(settings, candidate, champion, recent if None not in recent else None)  # type: ignore[arg-type]
    Console().print(verdict_table(verdict))
    say(f"gate {'passed' if verdict.passed else 'refused'} (tolerance {settings.gate_tolerance})")


def _print_latest_drift(settings: Settings, monitor_url: str, name: str, version: str, say: Say) -> None:
    body = requests.get(f"{monitor_url}/v1/drift", params={"model": name, "version": version},
                        headers=auth_headers(settings), timeout=30).json()
    for entry in body["versions"]:
        latest = entry["latest"] or {}
        for feature, f in (latest.get("features") or {}).items():
            say(f"  {feature:18s} {f['severity']:5s} p-value {f['p_value']:.2g}, PSI {f['effect_size']:.2f}")
