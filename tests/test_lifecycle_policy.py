"""Automatic-move rules (pure), the retraining lock, the audit log and the webhook action."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

from lifecycle.actions import call_webhook
from lifecycle.alerts import handle_alert
from lifecycle.audit import audit, read_audit
from lifecycle.errors import LifecycleError, RetrainBusy
from lifecycle.policy import ALERT, HOLD, RETRAIN, ROLLBACK, DriftTrigger, DriftWindow, RollbackPolicy, WindowQuality
from lifecycle.retrain import retrain_lock
from vigil.config import Settings, load

POLICY = RollbackPolicy(margin=0.05, windows=3, min_labels=30, cooldown_s=600, period_s=3600)
NOW = 100_000.0


def _windows(*values: float, labels: int = 50) -> list[WindowQuality]:
    return [WindowQuality(60 * i, v, labels) for i, v in enumerate(values)]


def _decide(policy: RollbackPolicy = POLICY, windows: list[WindowQuality] | None = None, **kw: Any) -> Any:
    args = {"champion": "3", "previous": "2", "baseline": 0.95, "now": NOW,
            "last_champion_move_at": NOW - 3600, "last_auto_move_at": None} | kw
    return policy.decide(windows=windows if windows is not None else _windows(0.7, 0.72, 0.69), **args)


def test_rollback_after_k_windows_below_the_previous_champion() -> None:
    decision = _decide()
    assert decision.action == ROLLBACK and "automatic rollback to v2" in decision.reason
    assert decision.evidence["bar"] == pytest.approx(0.90) and len(decision.evidence["windows"]) == 3


@pytest.mark.parametrize(
    ("windows", "why"),
    [
        (_windows(0.7, 0.93, 0.7), "2 of the last 3 labelled windows are worse"),  # one window recovered
        (_windows(0.7, 0.7), "only 2 of 3 windows"),  # not enough evidence yet
        (_windows(0.7, 0.7, 0.7, labels=29), "only 0 of 3 windows have >= 30 labels"),
        (_windows(0.91, 0.92, 0.91), "0 of the last 3"),  # within the margin
    ],
)
def test_not_enough_or_mixed_evidence_holds(windows: list[WindowQuality], why: str) -> None:
    decision = _decide(windows=windows)
    assert decision.action == HOLD and why in decision.reason


def test_sparse_windows_are_skipped_not_counted() -> None:
    windows = _windows(0.7, 0.7) + [WindowQuality(500, 0.99, 3), WindowQuality(560, 0.7, 40)]
    assert _decide(windows=windows).action == ROLLBACK


def test_guard_rails_cooldown_period_dry_run_and_no_previous() -> None:
    cooldown = _decide(last_champion_move_at=NOW - 100)
    assert cooldown.action == HOLD and "cooldown" in cooldown.reason and "500s left" in cooldown.reason
    period = _decide(last_auto_move_at=NOW - 60)
    assert period.action == HOLD and "at most one per 3600s" in period.reason
    assert _decide(last_auto_move_at=NOW - 4000).action == ROLLBACK
    dry = _decide(RollbackPolicy(dry_run=True, min_labels=30))
    assert dry.action == ALERT and dry.reason.startswith("dry run: would roll back to v2")
    assert _decide(previous=None).action == ALERT
    assert _decide(baseline=None).action == HOLD


def test_lower_is_better_metrics_compare_the_other_way() -> None:
    policy = RollbackPolicy(windows=2, min_labels=1, margin=1.0, lower_is_better=True)
    assert _decide(policy, windows=_windows(12.0, 13.0), baseline=10.0).action == ROLLBACK
    assert _decide(policy, windows=_windows(10.5, 13.0), baseline=10.0).action == HOLD


def _drift(*flags: bool, start: int = 0) -> list[DriftWindow]:
    return [DriftWindow(start + 60 * i, f, 0.75 if f else 0.0, ("petal",) if f else ()) for i, f in enumerate(flags)]


def test_drift_trigger_needs_k_drifted_windows_and_is_debounced() -> None:
    trigger = DriftTrigger(windows=3, debounce_s=3600)
    assert trigger.decide(_drift(True, True, False), NOW).action == HOLD
    assert trigger.decide(_drift(True, True), NOW).action == HOLD
    fired = trigger.decide(_drift(False, True, True, True), NOW)
    assert fired.action == RETRAIN and fired.evidence["windows"] == [60, 120, 180]
    assert fired.evidence["features"] == ["petal"]
    # The same streak, even after the debounce period, does not fire twice...
    same = trigger.decide(_drift(False, True, True, True, True), NOW + 7200, NOW, 180)
    assert same.action == HOLD and "already triggered" in same.reason
    # ...a new streak within the debounce period does not either...
    soon = trigger.decide(_drift(True, True, True, start=600), NOW + 60, NOW, 180)
    assert soon.action == HOLD and "debounced" in soon.reason
    # ...and a new streak after it does.
    assert trigger.decide(_drift(True, True, True, start=600), NOW + 3601, NOW, 180).action == RETRAIN


def test_one_retraining_at_a_time_and_stale_locks_are_taken_over(tmp_path: Path) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path)})
    with retrain_lock(settings, "iris") as path:
        assert path.exists()
        with pytest.raises(RetrainBusy, match="a retraining of iris is already running"):
            with retrain_lock(settings, "iris"):
                pass
        with retrain_lock(settings, "wine"):  # other models are independent
            pass
    assert not path.exists()
    path.write_text(json.dumps({"pid": 2**22 + 12345, "at": 0}))  # a pid that cannot exist
    with retrain_lock(settings, "iris"):
        assert json.loads(path.read_text())["pid"] != 2**22 + 12345


def test_audit_log_appends_one_record_per_decision(tmp_path: Path) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path)})
    audit(settings, "iris", "rollback", _decide(), source="test")
    audit(settings, "iris", "rollback", _decide(last_auto_move_at=NOW), source="test")
    records = read_audit(settings)
    assert [r["action"] for r in records] == [ROLLBACK, HOLD]
    assert records[0]["evidence"]["previous"] == "2" and records[1]["source"] == "test"


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], dict[str, Any]]] = []
    status = 204

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    _Hook.received, _Hook.status = [], 204
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/repos/o/r/actions/workflows/retrain.yml/dispatches"
    server.shutdown()
    server.server_close()


def _webhook_settings(tmp_path: Path, url: str, style: str) -> Settings:
    return load({"VIGIL_HOME": str(tmp_path), "VIGIL_RETRAIN_ACTION": "webhook", "VIGIL_RETRAIN_WEBHOOK_URL": url,
                 "VIGIL_RETRAIN_WEBHOOK_SECRET": "Bearer s3cret", "VIGIL_RETRAIN_WEBHOOK_STYLE": style})


def test_webhook_github_workflow_dispatch_with_secret(tmp_path: Path, hook: str) -> None:
    evidence = {"reason": "drift in 3 windows", "windows": [60, 120, 180], "features": ["petal", "sepal"]}
    action = call_webhook(_webhook_settings(tmp_path, hook, "github"), "iris", evidence)
    assert action.ok and "answered 204" in action.detail
    headers, body = _Hook.received[0]
    assert headers["Authorization"] == "Bearer s3cret"
    assert body == {"ref": "main", "inputs": {"model": "iris", "reason": "drift in 3 windows",
                                               "windows": "60,120,180", "features": "petal,sepal"}}


def test_webhook_generic_body_and_a_refusal_is_reported(tmp_path: Path, hook: str) -> None:
    _Hook.status = 401
    action = call_webhook(_webhook_settings(tmp_path, hook, "generic"), "iris", {"windows": [1]})
    assert not action.ok and action.data["status"] == 401
    assert _Hook.received[0][1]["event"] == "vigil.retrain" and _Hook.received[0][1]["evidence"] == {"windows": [1]}
    with pytest.raises(LifecycleError, match="needs VIGIL_RETRAIN_WEBHOOK_URL"):
        call_webhook(load({"VIGIL_HOME": str(tmp_path), "VIGIL_RETRAIN_ACTION": "webhook"}), "iris", {})


def test_alert_payloads_are_validated_and_resolved_alerts_ignored(tmp_path: Path) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path)})
    with pytest.raises(LifecycleError, match="not an Alertmanager payload"):
        handle_alert(settings, {"status": "firing"})
    payload = {"status": "resolved", "alerts": [
        {"status": "resolved", "labels": {"alertname": "VigilDatasetDrift", "model": "iris"}},
        {"status": "firing", "labels": {"alertname": "SomethingElse", "model": "iris"}},
    ]}
    assert [a.kind for a in handle_alert(settings, payload)] == ["ignored", "ignored"]


@pytest.mark.parametrize("pipeline", ["Jenkinsfile", "github-actions-retrain.yml"])
def test_pipelines_run_the_same_cli_steps_in_order(pipeline: str) -> None:
    import re

    from cli.main import build_parser

    text = (Path(__file__).resolve().parent.parent / "deploy" / "ci" / pipeline).read_text()
    steps = re.findall(r"\.venv/bin/vigil (\w+)", text)
    assert steps == ["retrain", "convert", "promote", "export", "versions"]
    parser = build_parser()
    for step in steps:  # each step is a real subcommand (tests/test_pipelines.py runs them)
        args = parser.parse_args([step, "iris", *(["1", "--to", "production"] if step == "promote" else
                                                 ["--version", "1"] if step in ("convert", "export") else [])])
        assert args.command == step and args.func.__name__ == f"cmd_{step}"
