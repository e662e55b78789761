"""The profile agent in a real `bentoml serve`: every served row logged exactly once, across an
agent crash (restarted, counted) and a service restart; its metrics on the service's /metrics."""

from __future__ import annotations

import re
import signal
import os
import time
from pathlib import Path

import pytest
import requests

from helpers import free_port, running_server
from serving_models import build_iris
from vigil.config import load
from vigil.predlog import query
from serving.launch import serve_command
from vigil.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration
FLUSH_S = 0.3


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name}{labels} not in /metrics"
    return float(match.group(1))


def _send(base: str, rows: list, n: int) -> list[str]:
    session, ids = requests.Session(), []
    for _ in range(n):
        answer = session.post(f"{base}/predict", json={"instances": rows}, timeout=10)
        assert answer.status_code == 200, answer.text
        ids += answer.json()["request_ids"]
    return ids


def _logged(root: Path) -> list[str]:
    frame, _ = query.query(root, "SELECT request_id FROM served")
    return frame["request_id"].tolist()


def _wait_logged(root: Path, expected: int, timeout: float = 20) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        ids = _logged(root) if root.exists() else []
        if len(ids) >= expected or time.monotonic() > deadline:
            return ids
        time.sleep(0.2)


def _agent_pids(log: Path) -> list[int]:
    return [int(p) for p in re.findall(r"vigil agent (\d+) started", log.read_text())]


def test_rows_logged_exactly_once_across_agent_crash_and_service_restart(tmp_path: Path) -> None:
    model = build_iris(tmp_path / "iris")
    settings = load({
        "VIGIL_HOME": str(tmp_path), "VIGIL_MODEL": str(model.folder), "VIGIL_GRPC_PORT": "0",
        # No monitor listens there: profiles are spooled, the log must not care.
        "VIGIL_MONITOR_URL": f"http://127.0.0.1:{free_port()}", "VIGIL_PROFILE_SEND_TIMEOUT_S": "0.2",
        "VIGIL_PREDICTION_LOG_MAX_ROWS_PER_SECOND": "0", "VIGIL_PREDICTION_LOG_FLUSH_SECONDS": str(FLUSH_S),
    })
    root = settings.prediction_log_dir
    served: list[str] = []
    log = tmp_path / "serve.log"

    def serve():
        port = free_port()
        argv, env = serve_command(settings, port=port, workers=1)
        env["BENTOML_HOME"] = str(tmp_path / "bentoml")
        base = f"http://127.0.0.1:{port}"
        return running_server(argv, env, f"{base}/readyz", timeout=90, cwd=PROJECT_ROOT, log_path=log), base

    server, base = serve()
    with server:
        served += _send(base, model.rows[:5], 40)
        assert sorted(_wait_logged(root, len(served))) == sorted(served)  # flushed within the interval
        deadline = time.monotonic() + 10
        while not _agent_pids(log) and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(_agent_pids(log)[-1], signal.SIGKILL)  # the agent dies between flushes
        time.sleep(1.0)
        served += _send(base, model.rows[:3], 40)  # first batches spill to disk until the new agent runs
        assert sorted(_wait_logged(root, len(served))) == sorted(served)
        metrics = requests.get(f"{base}/metrics", timeout=10).text
        assert _metric(metrics, "vigil_profile_agent_restarts_total") == 1
        assert _metric(metrics, "vigil_prediction_log_rows_total", '{outcome="written"}') >= 3 * 40
        # 40 requests arrive as a few 100-ms hand-offs, each one record per model version
        assert 1 <= _metric(metrics, "vigil_profile_agent_batches_total", '{source="queue"}') <= 40
        deadline = time.monotonic() + 15  # the agent's profile stream (no monitor: spooled), off the worker
        while _metric(requests.get(f"{base}/metrics", timeout=10).text, "vigil_profiles_spooled_total") < 1:
            assert time.monotonic() < deadline, "the agent's profile stream metrics never showed up"
            time.sleep(0.3)
        assert len(_agent_pids(log)) == 2
        last_batch = _send(base, model.rows[:2], 5)  # stopped right after: the agent drains and flushes
        served += last_batch
    server, base = serve()
    with server:
        served += _send(base, model.rows[:4], 10)
    logged = _logged(root)
    assert len(logged) == len(served) and sorted(logged) == sorted(served)  # every row, exactly once
    frame, _ = query.query(root, "SELECT COUNT(*) AS n, MIN(sampling_rate) AS r, COUNT(DISTINCT batch_id) AS b FROM served")
    assert frame["n"][0] == len(served) and frame["r"][0] == 1.0
