"""Kubernetes deployment files: plain manifests against the API schemas, Helm chart values.

(No `helm` binary in CI: the chart is checked by its schema, by every `.Values.x.y`
referenced in a template existing in values.yaml, and by the files it embeds.)
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
CHART = DEPLOY / "helm" / "vigil"
K8S_VERSION = "1.30.0"


def _documents() -> list[tuple[str, dict]]:
    return [(path.name, doc) for path in sorted((DEPLOY / "k8s").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_plain_manifests_validate_strictly_against_kubernetes() -> None:
    docs = _documents()
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Deployment", "StatefulSet", "Service", "HorizontalPodAutoscaler", "ConfigMap", "Secret"} <= kinds
    for name, doc in docs:
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} {doc['kind']}/{doc['metadata']['name']}: {exc.message}")


def test_validation_catches_a_broken_manifest() -> None:
    _, deployment = next((n, d) for n, d in _documents() if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_service_probes_and_ports() -> None:
    deployment = next(d for _, d in _documents() if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert {p["containerPort"] for p in container["ports"]} == {3000, 8001}
    jobs = {d["metadata"]["labels"].get("vigil.io/job") for _, d in _documents() if d["kind"] == "Service"}
    assert jobs == {"vigil-service", "vigil-monitor"}  # the job names the alert rules select on


def _values() -> dict:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def _schema() -> dict:
    return json.loads((CHART / "values.schema.json").read_text())


def test_values_match_the_schema_and_the_schema_rejects_mistakes() -> None:
    jsonschema.validate(_values(), _schema())
    for path, bad in ((("service", "ports", "http"), 0), (("vigil", "sloP99Ms"), "fast"),
                      (("monitor", "persistence", "size"), "5GB"), (("vigil", "extraEnv"), {"PATH": "/x"})):
        values = _values()
        node = values
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(values, _schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**_values(), "sevrice": {}}, _schema())  # typo'd top-level key


def test_every_value_a_template_uses_exists() -> None:
    values = _values()
    used = set()
    for template in (CHART / "templates").iterdir():
        used |= set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", template.read_text()))
    assert len(used) > 20
    for dotted in sorted(used):
        node = values
        for key in dotted.split("."):
            assert isinstance(node, dict) and key in node, f".Values.{dotted} is not in values.yaml"
            node = node[key]


def test_chart_embeds_the_same_rules_and_dashboards() -> None:
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["apiVersion"] == "v2"
    rules = sorted(p.name for p in (CHART / "files" / "rules").glob("*.yml"))
    assert rules == sorted(p.name for p in (DEPLOY / "prometheus" / "rules").glob("*.yml")) and rules
    boards = sorted(p.name for p in (CHART / "files" / "dashboards").glob("*.json"))
    assert boards == ["vigil-monitor.json", "vigil-service.json"]
    for template in ("prometheusrule.yaml", "grafana-dashboards.yaml", "servicemonitor.yaml", "hpa.yaml",
                     "monitor-statefulset.yaml", "service-deployment.yaml", "mlflow.yaml", "secret.yaml"):
        assert (CHART / "templates" / template).exists(), template
    assert 'Files.Glob "files/rules/*.yml"' in (CHART / "templates" / "prometheusrule.yaml").read_text()
