"""The service over HTTP, with real `bentoml serve` processes on free ports."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers import free_port, running_server
from serving_models import IRIS_FEATURES, build_iris, build_mixed

from vigil.config import load
from serving.launch import serve_command
from vigil.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration


def _serve(home: Path, model: Path, workers: int = 1, **extra: str):
    settings = load({"VIGIL_HOME": str(home), "VIGIL_MODEL": str(model), **extra})
    port = free_port()
    argv, env = serve_command(settings, port=port, workers=workers)
    env["BENTOML_HOME"] = str(home / "bentoml")
    base = f"http://127.0.0.1:{port}"
    return running_server(argv, env, f"{base}/readyz", timeout=90, cwd=PROJECT_ROOT), base


@pytest.fixture(scope="module")
def iris_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    model = build_iris(home / "iris")
    server, base = _serve(home, model.folder, VIGIL_MAX_BODY_BYTES="4096", VIGIL_MAX_ROWS_PER_REQUEST="50")
    with server:
        yield base, model


def _metric(text: str, name: str, labels: str = "", missing: float | None = None) -> float:
    """One sample's value; `missing` is returned for a labelled series not yet observed
    (prometheus_client writes no sample for a label set until its first observation)."""
    pattern = rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    if match is None and missing is not None:
        return missing
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def test_predictions_match_sklearn(iris_server):
    base, model = iris_server
    answer = requests.post(f"{base}/predict", json={"instances": model.rows}, timeout=5).json()
    assert answer["predictions"] == model.labels
    np.testing.assert_allclose(answer["probabilities"], model.probabilities, atol=1e-5)
    assert answer["classes"] == [0, 1, 2]
    assert answer["model"] == {"name": "iris", "version": "1"}
    assert len(set(answer["request_ids"])) == len(model.rows)


def test_object_rows_and_client_ids(iris_server):
    base, model = iris_server
    rows = [dict(zip(IRIS_FEATURES, r)) for r in model.rows[:2]]
    answer = requests.post(f"{base}/predict", json={"instances": rows, "ids": ["a", "b"]}, timeout=5).json()
    assert answer["request_ids"] == ["a", "b"] and answer["predictions"] == model.labels[:2]


BAD = [
    (b'{"instances": [[1, 2, 3]]}', 400, "wrong_feature_count", "expected 4"),
    (b'{"instances": [[1, NaN, 3, 4]]}', 400, "non_finite", "NaN"),
    (b'{"instances": [[1, 1e400, 3, 4]]}', 400, "non_finite", "too large"),
    (b'{"instances": [[1, "x", 3, 4]]}', 400, "expected_number", "sepal_width"),
    (b'{"instances": [[1, true, 3, 4]]}', 400, "expected_number", "boolean"),
    (b'{"instances": [{"sepal_length": 1}]}', 400, "missing_feature", "petal_width"),
    (b'{"instances": []}', 400, "empty_instances", "empty"),
    (b'{"instances": 3}', 400, "bad_instances", "list"),
    (b'{"rows": []}', 400, "missing_instances", "instances"),
    (b'{"instances": [[1,2,3,4]], "ids": ["a", "b"]}', 400, "ids_mismatch", "2 entries"),
    (b"{oops", 400, "invalid_json", "not valid JSON"),
    (b'{"instances": [' + b",".join([b"[1,2,3,4]"] * 51) + b"]}", 400, "too_many_rows", "limit is 50"),
    (b'{"instances": "' + b"x" * 5000 + b'"}', 413, "body_too_large", "4096"),
]


def test_bad_input_gets_4xx_with_reason_and_server_keeps_serving(iris_server):
    base, model = iris_server
    for body, status, reason, words in BAD:
        response = requests.post(f"{base}/predict", data=body, timeout=5)
        assert response.status_code == status, (body[:60], response.text)
        error = response.json()["error"]
        assert error["reason"] == reason and words in error["message"], error
    ok = requests.post(f"{base}/predict", json={"instances": model.rows[:1]}, timeout=5)
    assert ok.status_code == 200


def test_metadata_and_probes(iris_server):
    base, _ = iris_server
    meta = requests.get(f"{base}/metadata", timeout=5).json()
    assert meta["model"]["name"] == "iris" and meta["task"] == "classification"
    assert [f["name"] for f in meta["inputs"]["features"]] == IRIS_FEATURES
    assert meta["outputs"]["classes"] == [0, 1, 2]
    # The converter's own report on 50 held-out rows (tests/serving_models.py), not a constant.
    parity = meta["parity"]
    assert parity["passed"] is True and parity["rows"] == 50 and 0 < parity["max_abs_err"] <= 1e-5, parity
    assert requests.get(f"{base}/readyz", timeout=5).status_code == 200
    assert requests.get(f"{base}/livez", timeout=5).status_code == 200


def test_metrics_count_rows_and_rejections(iris_server):
    base, model = iris_server
    before = requests.get(f"{base}/metrics", timeout=5).text
    ok_before = _metric(before, "vigil_predictions_total", '{model="iris",outcome="ok",version="1"}')
    for _ in range(3):
        requests.post(f"{base}/predict", json={"instances": model.rows[:5]}, timeout=5).raise_for_status()
    requests.post(f"{base}/predict", data=b'{"instances": [[1]]}', timeout=5)
    after = requests.get(f"{base}/metrics", timeout=5).text
    assert _metric(after, "vigil_predictions_total", '{model="iris",outcome="ok",version="1"}') == ok_before + 15
    assert _metric(after, "vigil_rejected_requests_total", '{reason="wrong_feature_count"}') >= 1
    assert _metric(after, "vigil_model_info", '{model="iris",version="1"}') == 1
    http = {"labels": '{protocol="http"}'}
    # the module's first test may be this one (random order): no http sample before it
    assert _metric(after, "vigil_request_seconds_count", **http) >= _metric(before, "vigil_request_seconds_count", **http, missing=0) + 3
    assert _metric(after, "vigil_batch_size_sum") >= 15
    assert _metric(after, "vigil_queue_rows") == 0
    assert "vigil_inference_seconds_bucket" in after


def test_native_api_through_bentoml_client(iris_server):
    import bentoml

    base, model = iris_server
    with bentoml.SyncHTTPClient(base, server_ready_timeout=10) as client:
        answer = client.predict(instances=model.rows[:4], ids=["w", "x", "y", "z"])
    assert answer["predictions"] == model.labels[:4] and answer["request_ids"] == ["w", "x", "y", "z"]
    bad = requests.post(f"{base}/v1/predict", json={"instances": [[1, 2]]}, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["reason"] == "wrong_feature_count"


def test_mixed_model_with_two_workers_sums_metrics(tmp_path):
    model = build_mixed(tmp_path / "mixed")
    server, base = _serve(tmp_path, model.folder, workers=2)
    names = ["age", "income", "city", "plan"]
    with server:
        # /readyz answers as soon as one worker is up: wait until both ran their warm-up
        # batch, which also proves /metrics (served by one of them) sums both processes.
        deadline = time.monotonic() + 30
        while _metric(requests.get(f"{base}/metrics", timeout=5).text, "vigil_batch_size_count") < 2:
            assert time.monotonic() < deadline, "second worker never warmed up"
            time.sleep(0.2)
        rows = [dict(zip(names, r)) for r in model.rows]
        for row, label in zip(rows, model.labels):
            # a new connection per request lets the kernel spread them over both workers
            answer = requests.post(f"{base}/predict", json={"instances": [row]}, headers={"Connection": "close"},
                                   timeout=5).json()
            assert answer["predictions"] == [label]
        answer = requests.post(f"{base}/predict", json={"instances": model.rows}, timeout=5).json()
        np.testing.assert_allclose(answer["probabilities"], model.probabilities, atol=1e-5)
        text = requests.get(f"{base}/metrics", timeout=5).text
    n = len(model.rows)
    assert _metric(text, "vigil_predictions_total", '{model="mixed",outcome="ok",version="1"}') == 2 * n
    # each worker ran one warm-up batch: both processes' samples are in the sum
    assert _metric(text, "vigil_batch_size_count") == 2 + n + 1
    assert _metric(text, "vigil_model_info", '{model="mixed",version="1"}') == 1
