"""Labels with outcome/value through the monitor's HTTP app: into the log and into KPI metrics."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from starlette.testclient import TestClient

from monitor.server import create_app
from monitor.state import Monitor
from vigil.config import load
from vigil.predlog import query
from vigil.predlog.writer import RowLog
from vigil.served_batch import ServedBatch


def _metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    raise AssertionError(f"{name}{labels} not in /metrics")


def test_labels_with_outcome_and_value_land_in_the_log_and_the_kpis(tmp_path: Path) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_MONITOR_WINDOW_SECONDS": "60"})
    now = time.time()
    ids = {v: [f"v{v}-{i}" for i in range(10)] for v in ("1", "2")}
    # What the service's agent would have logged, and the versions the monitor knows from the stream.
    log = RowLog(settings.prediction_log_dir, flush_seconds=60)
    monitor = Monitor(settings)
    with monitor.store.transaction() as conn:
        for v in ("1", "2"):
            log.append(ServedBatch("shop", v, {"x": np.arange(10.0)}, np.zeros(10, int), request_ids=ids[v], timestamp=now))
            conn.execute("INSERT INTO versions (model, version, task, classes) VALUES ('shop', ?, 'classification', '[0, 1]')", (v,))
    log.flush()
    labels = [{"request_id": rid, "label": 0, "outcome": i < 3, "value": 10.0} for i, rid in enumerate(ids["1"])]
    labels += [{"request_id": rid, "label": 1, "outcome": i < 6, "value": 20.0 + i} for i, rid in enumerate(ids["2"])]
    labels.append({"request_id": "v2-0", "label": 1})  # business fields are optional
    with TestClient(create_app(settings, monitor)) as client:
        answer = client.post("/v1/labels", json=labels[:-1]).json()
        assert answer["joined"] == 20
        assert client.post("/v1/labels", json=labels[-1:]).status_code == 200
        bad = client.post("/v1/labels", json=[{"request_id": "a", "label": 1, "outcome": "maybe"}])
        assert bad.status_code == 400 and "outcome" in bad.json()["error"]
        metrics = client.get("/metrics").text
        page = client.get("/report").text

    # Prometheus: per version and window, and v2 (newest, no registry alias) vs v1.
    assert _metric(metrics, "vigil_monitor_kpi_labels", model="shop", version="2") == 10
    assert np.isclose(_metric(metrics, "vigil_monitor_kpi_outcome_rate", model="shop", version="1"), 0.3)
    assert _metric(metrics, "vigil_monitor_kpi_value_sum", model="shop", version="2") == sum(20.0 + i for i in range(10))
    assert np.isclose(_metric(metrics, "vigil_monitor_kpi_champion_diff",
                              model="shop", champion="2", previous="1", kpi="outcome_rate"), 0.6 - 0.3)
    assert "Business KPIs: shop" in page and "Champion v2 vs previous v1" in page

    # The log: labels joined to the served rows by request id, the latest label per id.
    frame, _ = query.query(settings.prediction_log_dir,
                           "SELECT version, COUNT(label) AS labelled, AVG(CAST(outcome AS DOUBLE)) AS rate,"
                           " SUM(value) AS value FROM predictions GROUP BY 1 ORDER BY 1")
    assert frame["labelled"].tolist() == [10, 10]
    assert np.isclose(frame["rate"][0], 0.3)
    assert np.isclose(frame["value"][1], sum(20.0 + i for i in range(1, 10)))  # v2-0's latest label has no value
