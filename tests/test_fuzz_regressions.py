"""Regressions for the 500s fuzzing found (tests/test_fuzz.py), through the monitor's real ASGI app.

Each body below used to raise a bare TypeError/AttributeError inside a handler, which the
monitor answered with 500 (telling a producer to spool and retry a message that can never
succeed). They must be a 400 naming the problem.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from monitor.openapi import monitor_openapi
from monitor.server import create_app
from vigil.config import load
from serving.http.openapi import service_openapi

_PROFILE = {"v": 1, "batch_id": "b1", "model": "iris", "version": "1", "task": "classification",
            "timestamp": 1.0, "rows": 1, "profile": base64.b64encode(b"not a profile").decode(),
            "request_ids": ["r1"], "predictions": [0]}

BAD_PROFILES = [
    ({"classes": 5}, "'classes' must be a list"),
    ({"classes": 5, "scores": [[0.5]]}, "'classes' must be a list"),
    ({"classes": [[1]]}, "'classes' must be a list"),
    ({"classes": [0], "scores": [["x"]]}, "scores must be numbers"),
    ({"predictions": [{"a": 1}]}, "'predictions' must hold JSON scalars"),
    ({"profile": "8Civpj1dd1Ju"}, "not a whylogs profile"),  # valid base64, not a profile
]
BAD_ALERTS = [
    {"alerts": [1]},
    {"alerts": [True, False]},
    {"alerts": [{"annotations": 0.0, "labels": 0.0}]},
    {"alerts": [{"labels": [None], "status": "firing"}]},
    {"alerts": [{"labels": 3}]},
    {"alerts": [{"status": "firing", "labels": {"model": ["x"], "vigil_action": "retrain"}}]},
    {"alerts": [{"status": "firing", "labels": {"model": "iris", "alertname": ["VigilDatasetDrift"]}}]},
]


@pytest.fixture
def client(tmp_path: Path):
    with TestClient(create_app(load({"VIGIL_HOME": str(tmp_path)}))) as c:
        yield c


@pytest.mark.parametrize(("extra", "words"), BAD_PROFILES)
def test_ill_typed_profile_fields_are_400_not_500(client, extra, words) -> None:
    answer = client.post("/v1/profiles", json={**_PROFILE, **extra})
    assert answer.status_code == 400 and words in answer.json()["error"], answer.text


@pytest.mark.parametrize("payload", BAD_ALERTS)
def test_ill_shaped_alerts_are_400_not_500(client, payload) -> None:
    answer = client.post("/v1/actions/alert", json=payload)
    assert answer.status_code == 400, answer.text
    assert "must be an object whose 'labels' is an object of strings" in answer.json()["error"]


def test_the_openapi_documents_list_every_route(client) -> None:
    served = client.get("/openapi.json").json()
    assert served == monitor_openapi()
    assert set(served["paths"]) == {"/v1/profiles", "/v1/labels", "/v1/status", "/v1/drift", "/metrics", "/report",
                                    "/healthz", "/v1/actions/alert"}
    service = set(service_openapi()["paths"])
    assert {"/predict", "/metadata", "/metrics", "/v1/webhooks/mlflow", "/v2/models/{name}/infer",
            "/v2/models/{name}/versions/{version}/infer"} <= service
