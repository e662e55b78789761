"""The monitor hosts the lifecycle: alert names line up with the rules, the webhook route, the worker thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml
from starlette.testclient import TestClient

from lifecycle.alerts import alert_action
from monitor.server import create_app
from vigil.config import load

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _rule_alerts() -> list[dict]:
    alerts = []
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts += [r for r in group["rules"] if "alert" in r]
    return alerts


def test_every_drift_and_quality_alert_maps_to_a_lifecycle_action() -> None:
    routed = [a for a in _rule_alerts() if a.get("labels", {}).get("category") in ("drift", "quality")]
    names = {a["alert"] for a in routed}
    assert {"VigilDatasetDrift", "VigilQualityDrop"} <= names
    for alert in routed:
        labels = {"alertname": alert["alert"], **alert["labels"]}
        expected = "retrain" if labels["category"] == "drift" else "rollback-check"
        assert alert_action(labels) == expected, alert["alert"]
        assert "model" in alert["annotations"]["summary"], f"{alert['alert']} must carry the model label"
    assert alert_action({"alertname": "VigilServiceDown", "category": "availability"}) == ""
    assert alert_action({"alertname": "X", "vigil_action": "rollback-check"}) == "rollback-check"


def test_alertmanager_routes_drift_and_quality_to_the_monitor_route() -> None:
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    route = next(r for r in config["route"]["routes"] if r["receiver"] == "lifecycle-actions")
    assert 'category =~ "drift|quality"' in route["matchers"]
    receiver = next(r for r in config["receivers"] if r["name"] == "lifecycle-actions")
    assert receiver["webhook_configs"][0]["url"].endswith("/v1/actions/alert")


def test_alert_route_validates_and_answers_with_the_actions(tmp_path: Path) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path)})
    with TestClient(create_app(settings)) as client:
        bad = client.post("/v1/actions/alert", content=b"{nope")
        assert bad.status_code == 400 and "not JSON" in bad.json()["error"]
        wrong = client.post("/v1/actions/alert", json={"status": "firing"})
        assert wrong.status_code == 400 and "not an Alertmanager payload" in wrong.json()["error"]
        payload = {"status": "resolved", "alerts": [
            {"status": "resolved", "labels": {"alertname": "VigilDatasetDrift", "model": "iris"}}]}
        ok = client.post("/v1/actions/alert", json=payload)
        assert ok.status_code == 200
        assert [a["kind"] for a in ok.json()["actions"]] == ["ignored"]


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "vigil-lifecycle"]


@pytest.mark.parametrize("enabled", ["1", "0"])
def test_the_worker_thread_lives_as_long_as_the_app(tmp_path: Path, enabled: str) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_LIFECYCLE_WORKER": enabled,
                     "VIGIL_LIFECYCLE_POLL_SECONDS": "0.2"})
    before = len(_worker_threads())
    with TestClient(create_app(settings, port=1)):
        assert len(_worker_threads()) == before + (enabled == "1")
    deadline = time.monotonic() + 5
    while len(_worker_threads()) > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(_worker_threads()) == before
