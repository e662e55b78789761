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
    deployment = next(d for _, d in _documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == "vigil-service")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert {p["containerPort"] for p in container["ports"]} == {3000, 8001}
    jobs = {d["metadata"]["labels"].get("vigil.io/job") for _, d in _documents()
            if d["kind"] == "Service" and d["metadata"]["name"] != "vigil-mlflow"}
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


def _pin(package: str) -> str:
    line = next(l for l in (DEPLOY.parent / "constraints.txt").read_text().splitlines() if l.startswith(f"{package}=="))
    return line.strip()


def test_manifests_say_what_the_topology_recipe_runs() -> None:
    """Replicas, the alias they follow, the shared prediction log, PostgreSQL-backed MLflow (loadtest/topology)."""
    from loadtest.topology.stack import REPLICAS

    docs = {(d["kind"], d["metadata"]["name"]): d for _, d in _documents()}
    config = docs[("ConfigMap", "vigil-config")]["data"]
    assert config["VIGIL_MODEL"].startswith("models:/") and "@" in config["VIGIL_MODEL"]
    assert float(config["VIGIL_RELOAD_INTERVAL_SECONDS"]) > 0  # every replica polls: a webhook reaches one
    assert config["VIGIL_TRACKING_URI"] == "http://vigil-mlflow:5000"
    service, monitor = docs[("Deployment", "vigil-service")], docs[("StatefulSet", "vigil-monitor")]
    assert service["spec"]["replicas"] == REPLICAS == docs[("HorizontalPodAutoscaler", "vigil-service")]["spec"]["minReplicas"]
    claim = docs[("PersistentVolumeClaim", "vigil-prediction-log")]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for workload in (service, monitor):
        pod = workload["spec"]["template"]["spec"]
        volume = next(v["name"] for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"])
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[volume] == config["VIGIL_PREDICTION_LOG"], workload["metadata"]["name"]
    mlflow = docs[("Deployment", "vigil-mlflow")]["spec"]["template"]["spec"]["containers"][0]
    script = " ".join(mlflow["args"])
    assert _pin("psycopg2-binary") in script and '--backend-store-uri "$MLFLOW_BACKEND_STORE_URI"' in script
    assert mlflow["env"][0]["valueFrom"]["secretKeyRef"]["name"] == "vigil-mlflow-db"
    assert mlflow["image"].endswith(":v" + _pin("mlflow").split("==")[1])


def test_chart_says_what_the_topology_recipe_runs() -> None:
    from loadtest.topology.stack import REPLICAS

    values = _values()
    assert values["service"]["replicas"] == REPLICAS == values["service"]["autoscaling"]["minReplicas"]
    assert values["vigil"]["reloadIntervalSeconds"] > 0 and values["predictionLog"]["enabled"]
    templates = CHART / "templates"
    assert "accessModes: [ReadWriteMany]" in (templates / "prediction-log-pvc.yaml").read_text()
    for workload in ("service-deployment.yaml", "monitor-statefulset.yaml"):
        text = (templates / workload).read_text()
        assert "vigil.predictionLogMount" in text and "vigil.predictionLogVolume" in text, workload
    assert "VIGIL_PREDICTION_LOG" in (templates / "configmap.yaml").read_text()
    mlflow = (templates / "mlflow.yaml").read_text()
    assert _pin("psycopg2-binary") in mlflow and ".Values.mlflow.backendStore.existingSecret" in mlflow
