"""The observability stack against real processes: Locust SLO gate and a real Prometheus.

One module-scoped stack (real MLflow registry, `bentoml serve`, `python -m monitor`) is
shared: the gate's Locust run (reference rows plus a drifting user) is also the traffic
Prometheus then sees, and every rule and dashboard expression is evaluated against it.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from serving_models import IRIS_FEATURES, build_iris, register_servable

from loadtest.gate import run_loadtest
from vigil import artifacts
from vigil.config import load, process_env
from vigil.procs import free_port, running
from vigil.registry import connect
from serving.launch import serve_command
from vigil.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration
DEPLOY = PROJECT_ROOT / "deploy"
HOLDOUT_ACCURACY = 0.97


def _register_iris(settings, home: Path) -> None:
    """A servable iris version carrying a reference sample and its holdout metric, as train+convert leave it."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    built = build_iris(home / "iris-onnx")
    version = register_servable(settings, built.folder, "iris")
    X, y = load_iris(return_X_y=True)
    ref = pd.DataFrame(X, columns=IRIS_FEATURES)
    model = LogisticRegression(max_iter=500).fit(X, y)
    ref["target"], ref["prediction"] = y, model.predict(X)
    for i, column in enumerate(model.predict_proba(X).T):
        ref[f"proba_{i}"] = column
    (home / "vigil").mkdir()
    ref.to_parquet(home / "vigil" / "reference.parquet")
    client = connect(settings)
    run_id = client.get_model_version("iris", version).run_id
    client.log_artifact(run_id, str(home / "vigil" / "reference.parquet"), "vigil")
    for key, value in {artifacts.TAG_TASK: "classification", artifacts.TAG_TARGET: "target",
                       artifacts.TAG_METRIC_PREFIX + "accuracy": str(HOLDOUT_ACCURACY)}.items():
        client.set_model_version_tag("iris", version, key, value)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("deploy-home")
    monitor_port, service_port = free_port(), free_port()
    settings = load({"VIGIL_HOME": str(home), "VIGIL_MODEL": "models:/iris@champion",
                     "VIGIL_MONITOR_URL": f"http://127.0.0.1:{monitor_port}", "VIGIL_MONITOR_WINDOW_SECONDS": "2",
                     "VIGIL_GRPC_PORT": str(free_port())})
    _register_iris(settings, home)
    monitor_env = {**process_env(settings), "VIGIL_MONITOR_WINDOW_SECONDS": "2"}
    argv, env = serve_command(settings, port=service_port)
    service = f"http://127.0.0.1:{service_port}"
    with running([sys.executable, "-m", "monitor", "--port", str(monitor_port)], monitor_env,
                 f"{settings.monitor_url}/healthz", home / "monitor.log", timeout=60), \
         running(argv, env, f"{service}/readyz", home / "service.log", timeout=90):
        yield settings, service, home


def _slo(path: Path, **fields) -> Path:
    path.write_text(yaml.safe_dump(fields))
    return path


def test_gate_passes_a_reachable_slo_and_reports_per_endpoint(stack, tmp_path, capsys) -> None:
    settings, service, _ = stack
    slo = _slo(tmp_path / "slo.yaml", p50_ms=500, p99_ms=2000, max_error_rate=0.01, min_rps=5, duration_s=5,
               users=3, spawn_rate=3, user_classes=["PredictUser", "DriftUser"])
    verdict = run_loadtest(settings, service, slo, tmp_path / "out")
    assert verdict.passed and verdict.exit_code == 0, verdict.checks
    assert [e.name for e in verdict.endpoints] == ["/predict"] and verdict.total.requests > 50
    assert "reference sample" in verdict.notes[0], verdict.notes
    assert len(json.loads((tmp_path / "out" / "payloads.json").read_text())) == 150
    assert (tmp_path / "out" / "report.html").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "/predict" in out and "SLO met" in out


def test_gate_fails_an_impossible_slo(stack, tmp_path, capsys) -> None:
    settings, service, _ = stack
    slo = _slo(tmp_path / "slo.yaml", p50_ms=0, p99_ms=0, max_error_rate=0, min_rps=1e9, duration_s=2, users=1)
    verdict = run_loadtest(settings, service, slo, tmp_path / "out")
    assert not verdict.passed and verdict.exit_code == 1
    failed = {c.name for c in verdict.checks if not c.passed}
    assert {"p99 latency", "throughput"} <= failed
    assert "SLO breached" in capsys.readouterr().out


def test_the_locust_grpc_user_runs_against_the_grpc_server(stack, tmp_path, capsys) -> None:
    settings, service, _ = stack
    slo = _slo(tmp_path / "slo.yaml", p50_ms=500, p99_ms=2000, max_error_rate=0.01, min_rps=1, duration_s=4,
               users=2, spawn_rate=2, user_classes=["GrpcUser"])
    verdict = run_loadtest(settings, service, slo, tmp_path / "out")
    assert verdict.passed, verdict.checks
    grpc = [e for e in verdict.endpoints if "grpc" in e.name.lower() or "infer" in e.name.lower()]
    assert grpc and grpc[0].requests > 10 and grpc[0].failures == 0, [(e.name, e.requests) for e in verdict.endpoints]
    assert verdict.total.requests == sum(e.requests for e in verdict.endpoints)


def test_vigil_loadtest_exits_1_on_a_breached_slo_as_a_process(stack, tmp_path) -> None:
    import subprocess

    settings, service, home = stack
    slo = _slo(tmp_path / "slo.yaml", p50_ms=0, p99_ms=0, max_error_rate=0, min_rps=1e9, duration_s=2, users=1)
    vigil = str(Path(sys.executable).with_name("vigil"))
    env = {**process_env(settings)}
    done = subprocess.run([vigil, "loadtest", "--host", service, "--slo", str(slo), "--out", str(tmp_path / "out")],
                          env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "SLO breached" in done.stdout
    met = _slo(tmp_path / "met.yaml", p50_ms=1000, p99_ms=5000, max_error_rate=0.5, min_rps=1, duration_s=2, users=1)
    ok = subprocess.run([vigil, "loadtest", "--host", service, "--slo", str(met), "--out", str(tmp_path / "out2")],
                        env=env, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "SLO met" in ok.stdout, ok.stdout[-2000:] + ok.stderr[-2000:]


# -- Prometheus -------------------------------------------------------------------------
GRAFANA_VARS = {"$__rate_interval": "1m", "$model": ".*"}


def _all_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every rule, dashboard target/annotation and Grafana alert query."""
    found = []
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [(f"{path.name}:{r.get('record') or r.get('alert')}", r["expr"]) for r in group["rules"]]
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text())
        found += [(f"{path.name}:{p['title']}", t["expr"]) for p in board["panels"] for t in p["targets"]]
        found += [(f"{path.name}:annotation {a['name']}", a["expr"]) for a in board["annotations"]["list"] if "expr" in a]
    alerting = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "alerting" / "vigil-alerts.yml").read_text())
    for group in alerting["groups"]:
        found += [(f"grafana:{r['title']}", d["model"]["expr"]) for r in group["rules"] for d in r["data"] if "expr" in d["model"]]
    for key, value in GRAFANA_VARS.items():
        found = [(where, expr.replace(key, value)) for where, expr in found]
    return found


def _query(base: str, expr: str) -> dict:
    response = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]


def _wait_for(base: str, expr: str, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = _query(base, expr)["result"]
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"no data for {expr} after {timeout:.0f}s")


def _prometheus_config(path: Path, service: str, monitor: str) -> Path:
    """deploy/prometheus/prometheus.yml with these targets, 1 s scrapes and absolute rule paths."""
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    config.pop("alerting")
    targets = {"vigil-service": service, "vigil-monitor": monitor}
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]].split("//")[1]]}]
    path.write_text(yaml.safe_dump(config))
    return path


def test_prometheus_scrapes_both_and_every_expression_evaluates(stack, tmp_path) -> None:
    settings, service, _ = stack
    config = _prometheus_config(tmp_path / "prometheus.yml", service, settings.monitor_url)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]
    with running(argv, dict(process_env(settings)), f"{base}/-/ready", tmp_path / "prometheus.log", timeout=30):
        deadline = time.monotonic() + 20
        while {r["metric"]["job"] for r in _query(base, "up == 1")["result"]} != {"vigil-service", "vigil-monitor"}:
            assert time.monotonic() < deadline, _query(base, "up")["result"]
            time.sleep(0.5)
        rows = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
        for _ in range(40):  # fresh traffic inside the rate windows
            assert requests.post(f"{service}/predict", json={"instances": rows}, timeout=5).ok
            time.sleep(0.05)
        p99 = _wait_for(base, "vigil:request_seconds:p99_5m > 0")
        assert 0 < float(p99[0]["value"][1]) < 1.0
        assert _wait_for(base, 'vigil_monitor_feature_drift_p_value{model="iris",feature="petal_width"}')
        reference = _wait_for(base, 'vigil_monitor_reference_metric{model="iris",metric="accuracy"}')
        assert float(reference[0]["value"][1]) == pytest.approx(HOLDOUT_ACCURACY)
        assert _query(base, "vigil:slo_p99_seconds")["result"][0]["value"][1] == "0.025"
        expressions = _all_expressions()
        assert len(expressions) > 60
        errors = []
        for where, expr in expressions:
            assert "$" not in re.sub(r"\{\{.*?\}\}", "", expr), f"{where}: unsubstituted variable in {expr}"
            body = requests.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10).json()
            if body["status"] != "success":
                errors.append(f"{where}: {body.get('error')}")
        assert not errors, "\n".join(errors)
