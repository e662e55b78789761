"""process_* metrics: per worker and agent on the service's multiprocess /metrics, per monitor."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import requests
from helpers import free_port, running_server, wait_for
from serving_models import build_iris
from starlette.testclient import TestClient

from vigil.config import load
from vigil.process_stats import sample
from serving.launch import serve_command
from vigil.paths import PROJECT_ROOT

NAMES = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds", "process_threads")


def series(text: str, name: str) -> dict[tuple[str, str], float]:
    """{(role, index): value} of one process_* metric in an exposition text."""
    found = {}
    for labels, value in re.findall(rf"^{name}\{{([^}}]*)\}} ([0-9.e+-]+)$", text, re.MULTILINE):
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        assert set(pairs) == {"role", "index"}, f"{name} has labels {pairs}: only role and index (no pid)"
        found[(pairs["role"], pairs["index"])] = float(value)
    return found


def test_sample_reads_this_process():
    first = sample()
    assert first is not None and first.rss_bytes > 10 << 20 and first.threads >= 1 and first.open_fds >= 3
    busy = time.process_time() + 0.3
    while time.process_time() < busy:
        pass
    assert sample().cpu_seconds >= first.cpu_seconds + 0.25
    assert sample(os.getppid()) is not None and sample(2 ** 22 + 12345) is None


def test_the_monitor_exports_its_own_usage(tmp_path):
    from monitor.server import create_app

    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_LIFECYCLE_WORKER": "0"})
    with TestClient(create_app(settings)) as client:
        text = client.get("/metrics").text
    for name in NAMES:
        assert set(series(text, name)) == {("monitor", "0")}, name
    assert series(text, "process_resident_memory_bytes")[("monitor", "0")] > 10 << 20


@pytest.mark.integration
def test_each_worker_and_agent_exports_usage_that_moves_under_load(tmp_path):
    model = build_iris(tmp_path / "iris")
    monitor = f"http://127.0.0.1:{free_port()}"  # nothing listens: the agents spool, serving goes on
    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_MODEL": str(model.folder), "VIGIL_MONITOR_URL": monitor})
    port = free_port()
    argv, env = serve_command(settings, port=port, workers=2)
    env["BENTOML_HOME"] = str(tmp_path / "bentoml")
    base = f"http://127.0.0.1:{port}"
    wanted = {("worker", "1"), ("worker", "2"), ("agent", "1"), ("agent", "2")}
    with running_server(argv, env, f"{base}/readyz", timeout=90, cwd=PROJECT_ROOT):
        wait_for(lambda: set(series(requests.get(f"{base}/metrics", timeout=5).text,
                                    "process_threads")) == wanted, 30, "process_* for 2 workers and 2 agents")
        before = requests.get(f"{base}/metrics", timeout=5).text
        load_cmd = [sys.executable, "-c", (
            "import requests, sys, time\n"
            "s = requests.Session(); end = time.time() + 6\n"
            "while time.time() < end:\n"
            f"    s.post('{base}/predict', json={{'instances': {model.rows[:20]!r}}}, timeout=5)\n")]
        clients = [subprocess.Popen(load_cmd) for _ in range(3)]
        assert all(c.wait(60) == 0 for c in clients)
        time.sleep(2.5)  # one sampling period
        after = requests.get(f"{base}/metrics", timeout=5).text
    for name in NAMES:
        assert set(series(after, name)) == wanted, name
    cpu0, cpu1 = series(before, "process_cpu_seconds_total"), series(after, "process_cpu_seconds_total")
    # Both workers served (BentoML spreads connections) and their agents profiled what they served.
    assert sum(cpu1[k] - cpu0[k] for k in wanted if k[0] == "worker") > 0.5, (cpu0, cpu1)
    assert sum(cpu1[k] - cpu0[k] for k in wanted if k[0] == "agent") > 0.05, (cpu0, cpu1)
    assert all(v > 20 << 20 for v in series(after, "process_resident_memory_bytes").values())
