"""Retraining (real registry + converter) and the lifecycle worker acting on monitor answers.

The worker reads the monitor over HTTP; here a tiny local server answers /v1/status and
/v1/drift with payloads shaped like monitor/state.py's `drift()` (windows, verdicts,
label quality), so the test controls the evidence exactly.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlparse

import pytest

from converter import convert_version
from lifecycle import actions
from lifecycle import stages as S
from lifecycle.audit import read_audit
from lifecycle.errors import LifecycleError
from lifecycle.datasets import load_dataset
from lifecycle.moves import champion_version, promote
from lifecycle.retrain import retrain
from lifecycle.training import train
from lifecycle.worker import check_model, run_actions
from vigil.config import Settings, load, replace
from vigil.registry import connect
from helpers import clone_home

WINDOW = 60


class _Monitor(BaseHTTPRequestHandler):
    history: dict[str, list[dict[str, Any]]] = {}  # version -> /v1/drift history entries

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/v1/status":
            body = {"versions": [{"model": "iris", "version": v} for v in self.history]}
        else:
            wanted = [v for v in self.history if query.get("version") in (None, v)]
            body = {"versions": [_entry(v, self.history[v]) for v in wanted]}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def _entry(version: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    latest = dict(history[-1], features={"petal length (cm)": {"effect_size": 0.4, "drift": True}}) if history else None
    return {"model": "iris", "version": version, "task": "classification", "latest": latest, "history": history,
            "dataset_drift": bool(latest and latest["dataset_drift"])}


def _windows(start: int, drift: bool, accuracy: float | None, labels: int, n: int = 3) -> list[dict[str, Any]]:
    quality = {"labels": labels} | ({"accuracy": accuracy} if accuracy is not None else {})
    return [{"window_start": start + WINDOW * i, "rows": 100, "dataset_drift": drift, "drift_share": 0.75 if drift else 0.0,
             "drifted_features": ["petal length (cm)"] if drift else [], "quality": quality} for i in range(n)]


@pytest.fixture(scope="module")
def monitor_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Monitor)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def recent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Recent labelled iris rows: a directory with one CSV and one Parquet file."""
    folder = tmp_path_factory.mktemp("recent")
    X, y, _ = load_dataset("iris")
    frame = X.assign(target=y).sample(60, random_state=1)
    frame.iloc[:30].to_csv(folder / "a.csv", index=False)
    frame.iloc[30:].assign(request_id="r").to_parquet(folder / "b.parquet")  # extra columns are dropped
    return folder


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, monitor_url: str, recent: Path) -> Settings:
    """iris v1, converted and in production: where every test here starts from."""
    settings = load({
        "VIGIL_HOME": str(tmp_path_factory.mktemp("vigil-home")), "VIGIL_MONITOR_URL": monitor_url,
        "VIGIL_RETRAIN_DATA": str(recent), "VIGIL_AUTO_PROMOTE": "1",
        "VIGIL_ROLLBACK_COOLDOWN_SECONDS": "600", "VIGIL_ROLLBACK_MIN_LABELS": "30", "VIGIL_ACTOR": "ci",
    })
    first = train(settings, reference_rows=200)
    convert_version(settings, f"models:/iris/{first.version}", progress=False)
    promote(settings, "iris", first.version, "production", reason="initial")
    return settings


@pytest.fixture
def settings(registry: Settings, tmp_path: Path) -> Settings:
    """This test's own copy of the registry (and of its lifecycle audit and state)."""
    return clone_home(registry, tmp_path / "home")


def test_retrain_registers_converts_links_evidence_and_stages(settings: Settings, recent: Path) -> None:
    evidence = {"windows": [0, 60, 120], "features": ["petal length (cm)"], "drift_share": [0.75, 0.75, 1.0],
                "reason": "drift over 3 windows"}
    result = retrain(settings, "iris", recent=recent, evidence=evidence)
    assert (result.base_version, result.version, result.stage, result.converted) == ("1", "2", "staging", True)
    assert result.recent_rows == 60 and result.metric == "accuracy"
    assert result.candidate_recent is not None and result.champion_recent is not None
    assert result.verdict is not None and [r.check for r in result.verdict.rows][-1] == "recent-data accuracy"
    client = connect(settings)
    assert {k: str(v) for k, v in client.get_registered_model("iris").aliases.items()} == {"champion": "1", "challenger": "2"}
    version = client.get_model_version("iris", "2")
    assert version.tags["vigil.servable"] == "true" and version.tags["vigil.retrain.base_version"] == "1"
    run = client.get_run(result.run_id)
    assert run.data.tags["vigil.retrain.trigger"] == "drift"
    assert run.data.tags["vigil.drift.features"] == "petal length (cm)" and run.data.tags["vigil.drift.windows"] == "0,60,120"
    assert "recent_accuracy" in run.data.metrics and "champion_recent_accuracy" in run.data.metrics
    assert client.download_artifacts(result.run_id, "vigil/retrain/evidence.json").endswith("evidence.json")
    assert S.history(client, "iris")[-1].kind == S.RETRAIN
    assert "retrained iris v2 from v1 + 60 recent rows" in result.summary()


def test_retrain_refuses_data_without_the_model_columns(settings: Settings, tmp_path: Path) -> None:
    bad = tmp_path / "recent.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(LifecycleError, match=r"lacks column\(s\) 'sepal length \(cm\)'.*the target 'target'"):
        retrain(settings, "iris", recent=bad)
    with pytest.raises(LifecycleError, match="recent data not found"):
        retrain(settings, "iris", recent=tmp_path / "missing.csv")


def test_worker_retrains_once_on_persistent_drift_then_rolls_back_a_worse_champion(settings: Settings) -> None:
    now = int(time.time())
    _Monitor.history = {"1": _windows(now - 300, drift=True, accuracy=0.96, labels=40)}
    acted = check_model(settings, "iris", rollback_check=False)
    assert [a.kind for a in acted] == ["retrain"] and acted[0].detail == "local retraining started"
    actions._running["iris"].join(120)
    assert champion_version(settings, "iris") == "2"  # the gate passed and auto-promotion is on
    # The same drift streak (now seen on v2's traffic) does not trigger a second retraining.
    _Monitor.history["2"] = _Monitor.history["1"]
    again = check_model(settings, "iris", rollback_check=False)
    assert again[0].kind == "retrain-hold" and "already triggered" in again[0].detail
    assert len(connect(settings).search_model_versions("name = 'iris'")) == 2

    # v2's live accuracy falls far below v1's recorded one: roll back, but only after the cooldown.
    _Monitor.history = {"1": _windows(now - 900, False, 0.96, 40), "2": _windows(now, False, 0.55, 40)}
    held = check_model(settings, "iris", retrain_check=False)
    assert held[0].kind == "rollback-hold" and "cooldown" in held[0].detail
    assert champion_version(settings, "iris") == "2"
    rolled = check_model(settings, "iris", retrain_check=False, now=time.time() + 601)
    assert rolled[0].kind == "rollback" and champion_version(settings, "iris") == "1"
    last = S.history(connect(settings), "iris")[-1]
    assert (last.version, last.kind, last.actor, last.previous_champion) == ("1", S.AUTO, "vigil-auto", "2")
    policies = [(r["policy"], r["action"]) for r in read_audit(settings)]
    assert ("retrain", "retrain") in policies and ("rollback", "hold") in policies and ("rollback", "rollback") in policies


def test_run_actions_one_pass_and_dry_run_only_alerts(settings: Settings) -> None:
    # v2 was champion before v1 came back: the previous champion to roll back to.
    second = train(settings, reference_rows=200)
    convert_version(settings, f"models:/iris/{second.version}", progress=False)
    promote(settings, "iris", second.version, "production", reason="v2")
    promote(settings, "iris", "1", "production", reason="back to v1")
    now = int(time.time())
    _Monitor.history = {"1": _windows(now, False, 0.40, 40), "2": _windows(now - 900, False, 0.97, 40)}
    dry = replace(settings, rollback_dry_run=True, rollback_cooldown_seconds=0, auto_move_period_seconds=0)
    done = run_actions(dry, once=True)
    assert [a.kind for a in done] == ["rollback-alert", "retrain-hold"]
    assert done[0].detail.startswith("dry run: would roll back to v2")
    assert champion_version(settings, "iris") == "1"


def _log_served_rows(root: Path, rows: int = 40) -> list[str]:
    """`rows` iris rows as the profile agent logs them (served by v1); returns their request ids."""
    import numpy as np

    from vigil.predlog.writer import RowLog
    from vigil.served_batch import ServedBatch

    X, y, _ = load_dataset("iris")
    sample = X.assign(target=y).sample(rows, random_state=7)
    ids = [f"req-{i}" for i in range(rows)]
    log = RowLog(root, max_rows_per_second=0)
    log.append(ServedBatch("iris", "1", {c: sample[c].to_numpy() for c in X.columns}, sample["target"].to_numpy(np.int64),
                           request_ids=ids))
    assert log.flush() == rows
    return ids


def test_retrain_without_data_uses_the_prediction_logs_labelled_rows(settings: Settings, tmp_path: Path) -> None:
    from vigil.predlog.writer import append_labels

    root = tmp_path / "predictions"
    from_log = replace(settings, retrain_data="", prediction_log=str(root))
    with pytest.raises(LifecycleError, match="prediction log cannot supply it: no logged rows for model 'iris'"):
        retrain(from_log, "iris")
    ids = _log_served_rows(root)
    with pytest.raises(LifecycleError, match="has no labelled rows of 'iris'"):
        retrain(from_log, "iris")
    # 25 labels: 24 usable, one that is not a class id (dropped), one for a row never logged (ignored).
    append_labels(root, [{"request_id": rid, "label": i % 3, "outcome": True, "value": 1.0}
                         for i, rid in enumerate(ids[:24])]
                  + [{"request_id": ids[24], "label": "not-a-class"}, {"request_id": "elsewhere", "label": 1}])
    result = retrain(from_log, "iris")
    assert result.recent_rows == 24 and result.converted
    tags = connect(settings).get_run(result.run_id).data.tags
    assert tags["vigil.retrain.recent_rows"] == "24"
    assert tags["vigil.retrain.recent_source"] == f"prediction log {root.resolve()}"
    assert f"+ 24 recent rows from prediction log {root.resolve()}" in result.summary()
    with pytest.raises(LifecycleError, match="turn the prediction log on"):
        retrain(replace(settings, retrain_data="", prediction_log="off"), "iris")
