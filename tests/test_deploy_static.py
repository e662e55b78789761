"""deploy/ checked by the real tools (promtool, amtool) and structurally (Grafana JSON)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
PROM = DEPLOY / "prometheus"
RULE_FILES = sorted((PROM / "rules").glob("*.yml"))
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))


def _run(*argv: str | Path) -> str:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{argv[0]} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def _alerts() -> list[dict]:
    return [r for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_accepts_config_and_rules() -> None:
    out = _run("promtool", "check", "config", PROM / "prometheus.yml")
    assert f"{len(RULE_FILES)} rule files found" in out
    _run("promtool", "check", "rules", *RULE_FILES)


def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted((PROM / "tests").glob("*.yml"))
    result = subprocess.run(["promtool", "test", "rules", *map(str, tests)], capture_output=True, text=True,
                            cwd=PROM / "tests", timeout=60)
    assert result.returncode == 0 and result.stdout.count("SUCCESS") == len(tests), result.stdout + result.stderr


def test_every_recording_rule_has_an_expression_test() -> None:
    records = {r["record"] for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"]
               for r in g["rules"] if "record" in r}
    tested = {check["expr"].strip() for path in (PROM / "tests").glob("*.yml")
              for case in yaml.safe_load(path.read_text())["tests"] for check in case.get("promql_expr_test", [])
              if check.get("exp_samples")}
    assert len(records) >= 13 and records - tested == set(), "recording rules without a promtool expression test"


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fired, quiet = set(), set()
    for path in (PROM / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check["exp_alerts"] else quiet).add(check["alertname"])
    names = {a["alert"] for a in _alerts()}
    assert names - fired == set(), "alerts never shown firing"
    assert names - quiet == set(), "alerts never shown quiet"


def test_every_alert_is_documented_and_routable() -> None:
    for alert in _alerts():
        assert {"summary", "description", "runbook"} <= set(alert["annotations"]), alert["alert"]
        assert alert["labels"]["severity"] in ("page", "warning", "info"), alert["alert"]
        assert alert["labels"].get("category"), alert["alert"]


def test_amtool_accepts_alertmanager_and_routes_drift_to_the_webhook() -> None:
    config = DEPLOY / "alertmanager" / "alertmanager.yml"
    _run("amtool", "check-config", config)
    for category, receiver in (("drift", "lifecycle-actions"), ("quality", "lifecycle-actions"), ("latency", "default")):
        out = _run("amtool", "config", "routes", "test", f"--config.file={config}", f"category={category}")
        assert out.strip().splitlines()[0] == receiver, out
    hook = yaml.safe_load(config.read_text())["receivers"][1]["webhook_configs"][0]["url"]
    assert hook == "http://127.0.0.1:3100/v1/actions/alert"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_structure(path: Path) -> None:
    board = json.loads(path.read_text())
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) and len(ids) >= 10
    for panel in board["panels"]:
        assert panel["datasource"]["type"] == "prometheus", panel["title"]
        assert panel["targets"] and all(t["expr"].strip() and t["datasource"] for t in panel["targets"]), panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "model"}


def test_dashboards_cover_the_required_views() -> None:
    exprs = " ".join(t["expr"] for path in DASHBOARDS for p in json.loads(path.read_text())["panels"] for t in p["targets"])
    for needle in ("sum by (protocol)", "vigil:slo_p99_seconds", "vigil_rejected_requests_total", "vigil_batch_size_bucket",
                   "vigil_inference_seconds_bucket", "vigil_model_info", "vigil_model_swaps_total",
                   "vigil_monitor_feature_drift_p_value", "vigil_monitor_prediction_drift", "vigil_monitor_quality_labels",
                   "vigil_monitor_concept_drift_detections_total", "vigil_profile_spool_bytes"):
        assert needle in exprs, needle


def _build_module():
    spec = importlib.util.spec_from_file_location("grafana_build", DEPLOY / "grafana" / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_grafana_files_are_up_to_date_and_mirror_the_alerts() -> None:
    build = _build_module()
    for path, text in build.outputs().items():
        assert path.read_text() == text, f"{path} is stale: run .venv/bin/python deploy/grafana/build.py"
    provisioned = yaml.safe_load(build.ALERTING_FILE.read_text())
    titles = [r["title"] for g in provisioned["groups"] for r in g["rules"]]
    assert sorted(titles) == sorted(a["alert"] for a in _alerts())
    assert len({r["uid"] for g in provisioned["groups"] for r in g["rules"]}) == len(titles)


def test_grafana_provisioning_files_parse() -> None:
    for path in (DEPLOY / "grafana" / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1, path


def test_both_dashboards_show_what_each_process_costs() -> None:
    """CPU, memory, threads and open files per process (process_*{role, index}), on the service and the monitor."""
    for path, job in ((DEPLOY / "grafana" / "dashboards" / "vigil-service.json", "vigil-service"),
                      (DEPLOY / "grafana" / "dashboards" / "vigil-monitor.json", "vigil-monitor")):
        targets = [t for p in json.loads(path.read_text())["panels"] for t in p["targets"]]
        for name in ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_threads", "process_open_fds"):
            shown = [t for t in targets if name in t["expr"]]
            assert shown and all(f'job="{job}"' in t["expr"] and "{{role}}" in t["legendFormat"] for t in shown), (path.name, name)
