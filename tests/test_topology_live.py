"""The production topology, live: PostgreSQL-backed MLflow, three replicas of the exported bento
(clean venv), one monitor, a real Prometheus and Alertmanager (loadtest/topology/).

Drifted traffic through the three replicas must: reach the monitor row for row (the
replicas' own counters == the monitor's ingested rows == what the clients got back),
fire VigilDatasetDrift in Prometheus, reach Alertmanager, whose webhook makes the
monitor retrain; the gate passes it, the promotion swaps every replica, a rollback
swaps every replica back, and no request fails. The process_* metrics of every worker,
agent and the monitor must have moved.
"""

from __future__ import annotations

import shutil

import pytest

from lifecycle import stages as S
from vigil.registry import connect
from loadtest.topology.stack import NAME, RELOAD_S, start_topology
from loadtest.topology.story import prom_query, run_story

pytestmark = pytest.mark.integration
# A replica follows the alias by polling every RELOAD_S; the download + load + warm of an
# iris ONNX model take well under a second, so this bound is generous on a busy machine.
SWAP_BOUND_S = RELOAD_S + 8.0
DRIFT_ALERTS = {"alert VigilDatasetDrift", "alert VigilPredictionDrift"}  # the audit's `source` of a webhook


@pytest.mark.timeout(420)
def test_three_replicas_follow_the_champion_and_every_row_reaches_the_monitor_once(tmp_path, capsys):
    if not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")):
        pytest.fail("prometheus / prometheus-alertmanager missing: run `make system-deps`")
    with start_topology(tmp_path / "topology") as topo:
        replicas = [r.split("//")[1] for r in topo.replicas]
        story = run_story(topo)
        targets = {(s["metric"]["job"], s["metric"]["instance"]): s["value"][1] for s in prom_query(topo, "up")}
        history = S.history(connect(topo.settings), NAME)
    with capsys.disabled():
        for swap in story.swaps:
            print(f"\n  swap {swap.replica} -> v{swap.to_version}: {swap.seconds:.2f} s "
                  f"(download {swap.download_ms:.0f} ms, load {swap.load_ms:.0f} ms)", end="")
        print(f"\n  rows answered {story.seen.rows_total()}, replicas' /metrics {story.rows_served_metrics}, "
              f"ingested {story.rows_ingested}, requests {story.seen.requests}, failed {story.seen.failed}")

    # Prometheus scraped all four processes.
    assert targets == {**{("vigil-service", r): "1" for r in replicas}, ("vigil-monitor", topo.monitor.split("//")[1]): "1"}
    # Every served row reached the monitor exactly once across the three producers.
    served = sum(story.rows_served_metrics.values())
    assert all(v > 0 for v in story.rows_served_metrics.values()), story.rows_served_metrics
    assert served == story.seen.rows_total() == story.rows_ingested, story
    # The drift alert fired, reached Alertmanager, and its webhook (not a poll: the worker is off) retrained.
    assert story.started_at < story.alert_fired_at < story.promoted_at and story.alert_routed_at > 0
    triggers = [r for r in story.retrain_audit if r["action"] == "retrain" and "executed" not in r]
    # Alertmanager may deliver the prediction-drift alert of the same shift first: either asks to retrain.
    assert len(triggers) == 1 and triggers[0]["source"] in DRIFT_ALERTS, story.retrain_audit
    # The gate decided: the retrained version went staging -> production through it, not forced.
    retrained = [m for m in history if m.version == story.retrained and m.kind == S.RETRAIN]
    assert [m.to_stage for m in retrained] == [S.STAGING, S.PRODUCTION] and not retrained[-1].forced
    assert story.retrained == "2" and story.rolled_back_to == "1"
    # Promotion and rollback each swapped all three replicas, within the poll interval (+ load).
    assert [(s.replica, s.to_version) for s in story.swaps] == [(r, v) for v in ("2", "1") for r in topo.replicas]
    assert all(-1.0 < s.seconds < SWAP_BOUND_S for s in story.swaps), story.swaps
    # ...with zero failed requests, and every replica answered with v1, then v2, then v1 again.
    assert story.seen.failed == 0, story.seen.errors
    assert {(i, v) for (i, v) in story.seen.rows} == {(i, v) for i in range(3) for v in ("1", "2")}
    # Resource usage moved under that load, per replica worker and agent, and on the monitor.
    cpu = story.cpu_increase
    for r in replicas:
        assert cpu.get((r, "worker", "1"), 0) > 0.2 and cpu.get((r, "agent", "1"), 0) > 0.01, cpu
    assert cpu.get((topo.monitor.split("//")[1], "monitor", "0"), 0) > 0.05, cpu
