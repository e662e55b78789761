"""What the topology run shows: drift → alert → Alertmanager → retraining → gate → all
replicas swap → rollback → all replicas swap back, every served row ingested once.

`run_story` drives it and returns the figures; the assertions live in
tests/test_topology_live.py, the narration in cli/topology.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import requests

from lifecycle import stages as S
from lifecycle.audit import read_audit
from vigil.auth import auth_headers
from vigil.registry import connect
from loadtest.topology.stack import NAME, Say, Topology
from loadtest.topology.traffic import DriftedTraffic, Seen


@dataclass
class ReplicaSwap:
    replica: str
    to_version: str
    # From the registry's record of the move to this replica's reloader installing the new
    # version. The record is written just after the alias itself, so a replica that polls
    # in between shows a few tens of ms below zero.
    seconds: float
    download_ms: float
    load_ms: float


@dataclass
class Story:
    alert_fired_at: float = 0.0  # Prometheus: VigilDatasetDrift firing
    alert_routed_at: float = 0.0  # Alertmanager holds it
    retrain_audit: list[dict[str, Any]] = field(default_factory=list)
    retrained: str = ""
    promoted_at: float = 0.0
    rolled_back_to: str = ""
    swaps: list[ReplicaSwap] = field(default_factory=list)
    seen: Seen = field(default_factory=Seen)
    rows_served_metrics: dict[str, float] = field(default_factory=dict)  # replica -> vigil_predictions_total ok
    rows_ingested: int = 0
    cpu_increase: dict[tuple[str, str, str], float] = field(default_factory=dict)  # (instance, role, index)
    started_at: float = field(default_factory=time.time)


def _wait(what: str, timeout: float, probe: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(0.25)
    raise TimeoutError(f"not within {timeout:.0f} s: {what}")


def prom_query(topo: Topology, expr: str) -> list[dict[str, Any]]:
    body = requests.get(f"{topo.prometheus}/api/v1/query", params={"query": expr}, timeout=10).json()
    return body["data"]["result"]


def _firing(topo: Topology, name: str) -> bool:
    alerts = requests.get(f"{topo.prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    return any(a["labels"].get("alertname") == name and a["state"] == "firing" for a in alerts)


def _routed(topo: Topology, name: str) -> bool:
    alerts = requests.get(f"{topo.alertmanager}/api/v2/alerts", params={"filter": f'alertname="{name}"'},
                          timeout=10).json()
    return bool(alerts)


def served_versions(topo: Topology) -> list[str]:
    headers = auth_headers(topo.settings)
    return [str(requests.get(f"{r}/metadata", headers=headers, timeout=10).json()["model"]["version"])
            for r in topo.replicas]


def _follow(topo: Topology, version: str, moved_at: float, timeout: float) -> list[ReplicaSwap]:
    """Wait until every replica serves `version`; each replica's swap as its reloader recorded it."""
    _wait(f"all {len(topo.replicas)} replicas on v{version}", timeout,
          lambda: all(v == version for v in served_versions(topo)))
    swaps, headers = [], auth_headers(topo.settings)
    for replica in topo.replicas:
        last = requests.get(f"{replica}/metadata", headers=headers, timeout=10).json()["reload"]["last_swap"]
        assert last["to"] == version, last
        swaps.append(ReplicaSwap(replica, version, last["at"] - moved_at, last["download_ms"], last["load_ms"]))
    return swaps


def _champion_move(topo: Topology, kind: str) -> S.Move | None:
    moves = [m for m in S.history(connect(topo.settings), NAME) if m.kind == kind and m.to_stage == S.PRODUCTION]
    return moves[-1] if moves else None


def rows_served(replica: str) -> float:
    """vigil_predictions_total{outcome="ok"} summed over versions, from the replica's /metrics."""
    total = 0.0
    for line in requests.get(f"{replica}/metrics", timeout=10).text.splitlines():
        if line.startswith("vigil_predictions_total{") and 'outcome="ok"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def rows_ingested(topo: Topology) -> int:
    status = requests.get(f"{topo.monitor}/v1/status", headers=auth_headers(topo.settings), timeout=10).json()
    return sum(v["rows_ingested"] for v in status["versions"] if v["model"] == NAME)


def run_story(topo: Topology, say: Say = print, timeout: float = 120.0) -> Story:
    """Drive the run (see the module docstring); raises TimeoutError naming the step that did not happen."""
    from lifecycle.moves import rollback

    story = Story()
    traffic = DriftedTraffic(topo.replicas).start()
    try:
        say(f"drifted traffic through {len(topo.replicas)} replicas (inputs +0.8 std)")
        _wait("VigilDatasetDrift firing in Prometheus", timeout, lambda: _firing(topo, "VigilDatasetDrift"))
        story.alert_fired_at = time.time()
        say("Prometheus: VigilDatasetDrift is firing")
        _wait("VigilDatasetDrift in Alertmanager", 30, lambda: _routed(topo, "VigilDatasetDrift"))
        story.alert_routed_at = time.time()
        say(f"Alertmanager holds it; its webhook posts to {topo.monitor}/v1/actions/alert")
        move = _wait("the retrained version's promotion", timeout, lambda: _champion_move(topo, S.RETRAIN))
        story.retrained, story.promoted_at = move.version, move.at
        story.retrain_audit = [r for r in read_audit(topo.settings) if r.get("policy") == "retrain"]
        say(f"retrained, gated and promoted: {move.describe()}")
        story.swaps += _follow(topo, move.version, move.at, 30)
        say("all replicas on v" + move.version + ": " + _times(story.swaps[-len(topo.replicas):]))

        time.sleep(2)  # some traffic on the new champion before moving back
        back = rollback(topo.settings, NAME, reason="topology: rollback drill")
        story.rolled_back_to = back.version
        say(f"rollback: {back.describe()}")
        story.swaps += _follow(topo, back.version, back.at, 30)  # timed like the promotion: from the record
        say("all replicas on v" + back.version + ": " + _times(story.swaps[-len(topo.replicas):]))
        time.sleep(2)
    finally:
        story.seen = traffic.stop()
    story.rows_served_metrics = {r: rows_served(r) for r in topo.replicas}
    served = sum(story.rows_served_metrics.values())
    # Profiles leave each agent once per slice (1 s); give the last ones time to land.
    _wait(f"the monitor ingesting all {served:.0f} served rows", 60, lambda: rows_ingested(topo) >= served)
    time.sleep(3)  # anything past this point would be a duplicate
    story.rows_ingested = rows_ingested(topo)
    window = f"{max(5, int(time.time() - story.started_at))}s"
    for sample in prom_query(topo, f"increase(process_cpu_seconds_total[{window}])"):
        labels = sample["metric"]
        story.cpu_increase[(labels["instance"], labels["role"], labels["index"])] = float(sample["value"][1])
    say(f"rows: {story.seen.rows_total()} answered to the clients, {served:.0f} on the replicas' /metrics, "
        f"{story.rows_ingested} ingested by the monitor; {story.seen.failed} failed requests of {story.seen.requests}")
    return story


def _times(swaps: list[ReplicaSwap]) -> str:
    return ", ".join(f"{s.replica.rsplit(':', 1)[1]} {s.seconds:.2f} s" for s in swaps)
