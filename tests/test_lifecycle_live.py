"""The lifecycle loop against the real processes: monitor (hosting the worker), `bentoml serve`, SQLite registry.

The traffic driver is the demo's (demo/loop.py: load with live labels, drift
injection, a bad v3 forced); every assertion here reads the registry, the audit log,
the monitor and the service directly.
"""

from __future__ import annotations

import pytest
import requests

from lifecycle import stages as S
from lifecycle.audit import read_audit
from vigil import artifacts as A
from vigil.config import load
from demo.story import NAME, _first_champion, demo_settings
from demo.loop import run_loop
from demo.stack import start_stack
from demo.traffic import load_iris_data
from vigil.registry import connect

WINDOW = 2


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_drift_retrains_once_then_a_worse_champion_is_rolled_back_after_the_cooldown(tmp_path, capsys) -> None:
    settings = demo_settings(load({"VIGIL_HOME": str(tmp_path / "home")}), window_seconds=WINDOW)
    _first_champion(settings)
    with start_stack(settings, prometheus=False) as stack:
        result = run_loop(stack.settings, stack, load_iris_data(), NAME, lambda s: None, lambda s: None)
        alert = requests.post(f"{stack.monitor_url}/v1/actions/alert", timeout=60, json={"status": "firing", "alerts": [
            {"status": "firing", "labels": {"alertname": "VigilQualityDrop", "model": NAME, "category": "quality"}}]})
        served = requests.post(f"{stack.base}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=5).json()

    client = connect(settings)
    history = S.history(client, NAME)
    audit = read_audit(settings)
    # Drift: exactly one retraining, whose version is registered, converted with parity, and promoted.
    triggers = [r for r in audit if r["policy"] == "retrain" and r["action"] == "retrain" and "executed" not in r]
    assert len(triggers) == 1 and triggers[0]["evidence"]["features"], triggers
    assert result.retrained == "2" and result.retrain_triggers == 1
    v2 = client.get_model_version(NAME, "2")
    assert v2.tags[A.TAG_PARITY] == "passed" and v2.tags[A.TAG_SERVABLE] == "true"
    assert client.get_run(v2.run_id).data.tags["vigil.retrain.trigger"] == "drift"
    retrain_moves = [(m.version, m.to_stage) for m in history if m.kind == S.RETRAIN and m.version == "2"]
    assert retrain_moves == [("2", S.STAGING), ("2", S.PRODUCTION)]
    # Versions: 1 (first champion), 2 (retrained), 3 (the forced bad one) and nothing else.
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{NAME}'")) == [1, 2, 3]
    # Rollback: automatic, back to v2, only after the cooldown, which the audit shows holding first.
    forced = next(m for m in history if m.version == "3" and m.to_stage == S.PRODUCTION)
    back = next(m for m in history if m.kind == S.AUTO and m.to_stage == S.PRODUCTION)
    assert forced.forced and back.version == "2" and back.previous_champion == "3"
    assert back.at - forced.at >= settings.rollback_cooldown_seconds
    assert any(r["policy"] == "rollback" and "cooldown" in r["reason"] for r in audit)
    assert [m for m in history if m.kind == S.AUTO and m.to_stage == S.PRODUCTION] == [back]  # one automatic move
    assert str(client.get_registered_model(NAME).aliases["champion"]) == "2"
    # The service followed every move under load without a failed request, and answers as v2.
    assert [s.to_version for s in result.swaps] == ["2", "3", "2"] and all(s.live for s in result.swaps)
    assert result.failures == 0 and all(s.requests > 0 for s in result.swaps)
    assert served["model"]["version"] == "2"
    # Alertmanager's webhook on the real monitor runs the same policy: v2 is fine, nothing moves.
    assert alert.status_code == 200, alert.text
    assert [a["kind"] for a in alert.json()["actions"]] == ["rollback-hold"]
    assert S.history(client, NAME)[-1] == history[-1]
