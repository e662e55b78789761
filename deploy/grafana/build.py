"""Generate Vigil's Grafana dashboards and Grafana-managed alert rules.

    .venv/bin/python deploy/grafana/build.py          (rewrites the generated files)

Dashboards are code because two 30-panel JSON files edited by hand drift apart (ids,
datasource refs, grid positions); the alert rules are derived from the Prometheus rule
files so there is a single definition of every alert. The outputs are committed — Grafana
and Helm read the files, not this script — and tests/test_deploy_grafana.py fails when
they are stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
DEPLOY = HERE.parent
RULES_DIR = DEPLOY / "prometheus" / "rules"
DASHBOARDS_DIR = HERE / "dashboards"
ALERTING_FILE = HERE / "provisioning" / "alerting" / "vigil-alerts.yml"
# The datasource provisioned by provisioning/datasources/prometheus.yml. Alert rules
# need a fixed uid; dashboards pick theirs through the ${datasource} variable.
DATASOURCE_UID = "vigil-prometheus"
DS = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
MODEL = 'model=~"$model"'


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "refId": ref, **extra}


def panel(title: str, kind: str, targets: list[dict[str, Any]], w: int = 12, h: int = 8,
          unit: str = "short", description: str = "", **extra: Any) -> dict[str, Any]:
    """A panel without id/gridPos: `layout` numbers and places them."""
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return {
        "title": title, "type": kind, "datasource": DS, "targets": targets, "description": description,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": extra.pop("overrides", [])},
        "gridPos": {"w": w, "h": h}, **extra,
    }


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Unique ids and left-to-right, top-to-bottom positions on Grafana's 24-column grid."""
    x = y = row_h = 0
    for i, p in enumerate(panels, start=1):
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["id"], p["gridPos"] = i, {"x": x, "y": y, "w": w, "h": h}
        x, row_h = x + w, max(row_h, h)
    return panels


def dashboard(uid: str, title: str, panels: list[dict[str, Any]], annotations: list[dict[str, Any]]) -> dict[str, Any]:
    variables = [
        {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus", "hide": 0},
        {"name": "model", "type": "query", "datasource": DS, "label": "Model", "includeAll": True, "multi": True,
         "current": {"text": "All", "value": "$__all"}, "allValue": ".*", "refresh": 2,
         "query": {"query": "label_values(vigil_model_info, model)", "refId": "model"},
         "definition": "label_values(vigil_model_info, model)"},
    ]
    builtin = {"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
               "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts", "type": "dashboard"}
    return {
        "uid": uid, "title": title, "tags": ["vigil"], "timezone": "browser", "schemaVersion": 39,
        "refresh": "10s", "time": {"from": "now-1h", "to": "now"}, "editable": True,
        "templating": {"list": variables},
        "annotations": {"list": [builtin, *annotations]},
        "panels": layout(panels),
    }


def quantiles(metric: str, by: str = "") -> list[dict[str, Any]]:
    group = f"le, {by}" if by else "le"
    legend = f"{{{{{by}}}}} " if by else ""
    return [target(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))", f"{legend}p{int(q * 100)}")
            for q in (0.5, 0.95, 0.99)]


SLO_OVERRIDE = {"matcher": {"id": "byName", "options": "SLO p99"},
                "properties": [{"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                               {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}}]}


def process_panels(job: str) -> list[dict[str, Any]]:
    """What each process costs: CPU, memory, threads and open files (process_*{role, index})."""
    sel, who = f'{{job="{job}"}}', "{{instance}} {{role}} {{index}}"
    return [
        panel("CPU per process (cores)", "timeseries", [target(f"rate(process_cpu_seconds_total{sel}[{RATE}])", who)],
              w=8, unit="short", description="role: worker / agent (a worker's profile agent) / monitor."),
        panel("Resident memory per process", "timeseries", [target(f"process_resident_memory_bytes{sel}", who)],
              w=8, unit="bytes"),
        panel("Threads and open files per process", "timeseries",
              [target(f"process_threads{sel}", f"threads {who}"),
               target(f"process_open_fds{sel}", f"fds {who}")], w=8, unit="short"),
    ]


def service_dashboard() -> dict[str, Any]:
    """Traffic, latency against the SLO, errors and shedding, batching, versions and swaps."""
    panels = [
        panel("Requests/s", "stat", [target("vigil:requests:rate5m", "req/s")], w=6, h=4, unit="reqps"),
        panel("p99 latency (5m)", "stat", [target("vigil:request_seconds:p99_5m", "p99")], w=6, h=4, unit="s"),
        panel("Failed rows", "stat", [target("vigil:prediction_errors:ratio_rate5m", "errors")], w=6, h=4, unit="percentunit"),
        panel("Shed (503)", "stat", [target("vigil:shed_requests:ratio_rate5m", "shed")], w=6, h=4, unit="percentunit"),
        panel("Requests/s by protocol", "timeseries",
              [target(f"sum by (protocol) (rate(vigil_request_seconds_count[{RATE}]))", "{{protocol}}")], unit="reqps",
              description="Answered requests; `protocol` is http or grpc (empty before gRPC is enabled)."),
        panel("Latency percentiles vs SLO", "timeseries",
              [*quantiles("vigil_request_seconds"), target("vigil:slo_p99_seconds", "SLO p99")], unit="s",
              overrides=[SLO_OVERRIDE], description="Time to answer one request, queueing and batching included."),
        panel("Refused requests by reason", "timeseries",
              [target(f"sum by (reason) (rate(vigil_rejected_requests_total[{RATE}]))", "{{reason}}"),
               target(f'sum(rate(vigil_predictions_total{{outcome="error",{MODEL}}}[{RATE}]))', "failed rows/s")],
              unit="reqps", description="4xx by reason, 503 overloaded (load shedding), and rows whose batch failed."),
        panel("Queue depth", "timeseries", [target("sum(vigil_queue_rows)", "rows waiting")],
              description="Rows waiting in the batcher across all workers."),
        panel("Batch size distribution", "heatmap",
              [target(f"sum by (le) (increase(vigil_batch_size_bucket[{RATE}]))", "{{le}}", format="heatmap")],
              options={"calculate": False, "yAxis": {"unit": "short"}}),
        panel("Inference time (ONNX Runtime, per batch)", "timeseries", quantiles("vigil_inference_seconds"), unit="s"),
        panel("Batches by protocols", "timeseries",
              [target(f"sum by (protocols) (rate(vigil_batches_total[{RATE}]))", "{{protocols}}")], unit="ops",
              description="Batches/s by the protocols of the requests they hold; grpc+http = HTTP and gRPC "
                          "requests served in one batch."),
        panel("Batch release reasons", "timeseries",
              [target(f"sum by (reason) (rate(vigil_batch_release_total[{RATE}]))", "{{reason}}")], unit="ops",
              description="full: the next request did not fit; latency: the batch latency bound passed; "
                          "idle: nothing else arrived within one loop turn; swap: the next request is for a new version."),
        panel("Oldest request's queue wait", "timeseries", quantiles("vigil_batch_queue_wait_seconds"), unit="s",
              description="How long the oldest request of each batch waited in the queue before its batch left."),
        panel("Rows per batch by protocol", "timeseries", quantiles("vigil_batch_protocol_rows", by="protocol"),
              description="Rows each protocol put into the batches that held it."),
        panel("Model version timeline", "state-timeline",
              [target(f"max by (model, version) (vigil_model_info{{{MODEL}}})", "{{model}} v{{version}}")],
              description="Which version each model served over time."),
        panel("Model swaps", "timeseries",
              [target(f"sum(increase(vigil_model_swaps_total[{RATE}]))", "swaps"),
               target(f"sum(increase(vigil_model_swap_failures_total[{RATE}]))", "failed swaps"),
               target("max(vigil_model_last_swap_timestamp_seconds) * 1000", "last swap (ms epoch)")]),
        panel("Profiles to the monitor", "timeseries",
              [target(f"sum(rate(vigil_profiles_sent_total[{RATE}]))", "sent"),
               target(f"sum(rate(vigil_profiles_spooled_total[{RATE}]))", "spooled"),
               target(f"sum(rate(vigil_profiles_replayed_total[{RATE}]))", "replayed"),
               target(f"sum by (reason) (rate(vigil_profiles_dropped_total[{RATE}]))", "dropped {{reason}}")],
              unit="ops"),
        panel("Profile spool", "timeseries", [target("max(vigil_profile_spool_bytes)", "spool bytes")], unit="bytes"),
        *process_panels("vigil-service"),
    ]
    swaps = {"name": "Model swaps", "datasource": DS, "enable": True, "iconColor": "purple",
             "expr": "changes(vigil_model_last_swap_timestamp_seconds[1m]) > 0", "step": "30s",
             "titleFormat": "model swap", "textFormat": "{{instance}}"}
    return dashboard("vigil-service", "Vigil / Service", panels, [swaps])


def monitor_dashboard() -> dict[str, Any]:
    """Drift per feature, dataset and prediction drift, quality with labels, profile flow."""
    mv = f"{{{MODEL}}}"
    panels = [
        panel("Dataset drift", "stat", [target(f"max by (model, version) (vigil_monitor_dataset_drift{mv})", "{{model}} v{{version}}")],
              w=8, h=4),
        panel("Drift share", "stat", [target(f"vigil_monitor_drift_share{mv}", "{{model}} v{{version}}")], w=8, h=4,
              unit="percentunit"),
        panel("Labels waiting", "stat", [target("vigil_monitor_labels_waiting", "waiting")], w=8, h=4),
        panel("Feature drift (latest window)", "table",
              [target(f"vigil_monitor_feature_drift_p_value{mv}", "", instant=True, format="table"),
               target(f"vigil_monitor_feature_drift_effect_size{mv}", "", instant=True, format="table"),
               target(f"vigil_monitor_feature_drift_severity{mv}", "", instant=True, format="table")],
              w=24, h=9, transformations=[{"id": "merge"}, {"id": "organize", "options": {
                  "excludeByName": {"Time": True, "__name__": True, "job": True, "instance": True},
                  "renameByName": {"Value #A": "p-value", "Value #B": "PSI", "Value #C": "severity (0/1/2)"}}}]),
        panel("Feature drift over time", "status-history",
              [target(f"max by (feature) (vigil_monitor_feature_drift_severity{mv})", "{{feature}}")], w=24, h=8,
              description="Severity per window: 0 none, 1 minor (dashboard only), 2 major (alerts, retraining)."),
        panel("Drift score per feature", "heatmap",
              [target(f"max by (feature) (vigil_monitor_feature_drift_effect_size{mv})", "{{feature}}")],
              options={"calculate": False}),
        panel("Dataset and prediction drift", "timeseries",
              [target(f"vigil_monitor_drift_share{mv}", "drift share {{model}} v{{version}}"),
               target(f"vigil_monitor_dataset_drift{mv}", "dataset drift {{model}} v{{version}}"),
               target(f"vigil_monitor_prediction_drift{mv}", "prediction drift {{model}} v{{version}}")]),
        panel("Quality vs holdout", "timeseries",
              [target(f'vigil_monitor_quality{{metric=~"accuracy|f1|r2",{MODEL}}}', "{{metric}} {{model}} v{{version}}"),
               target(f'vigil_monitor_reference_metric{{metric=~"accuracy|r2",{MODEL}}}', "holdout {{metric}} v{{version}}")],
              unit="percentunit"),
        panel("Labels", "timeseries",
              [target(f"vigil_monitor_quality_labels{mv}", "labels in window {{model}} v{{version}}"),
               target(f"sum by (outcome) (rate(vigil_monitor_labels_total[{RATE}]))", "{{outcome}}/s")]),
        panel("Concept drift detections", "timeseries",
              [target(f"sum by (model, version) (increase(vigil_monitor_concept_drift_detections_total{mv}[{RATE}]))",
                      "{{model}} v{{version}}")], description="ADWIN on the error stream of joined labels."),
        panel("Profile flow", "timeseries",
              [target(f"sum(rate(vigil_monitor_profiles_received_total[{RATE}]))", "received"),
               target(f"sum(rate(vigil_monitor_profiles_ingested_total[{RATE}]))", "ingested"),
               target(f"sum(rate(vigil_monitor_duplicate_profiles_total[{RATE}]))", "duplicates"),
               target(f"sum by (reason) (rate(vigil_monitor_rejected_total[{RATE}]))", "rejected {{reason}}"),
               target(f"sum(rate(vigil_profiles_spooled_total[{RATE}]))", "spooled by service")], unit="ops"),
        panel("Spool and ingest lag", "timeseries",
              [target("max(vigil_profile_spool_bytes)", "spool bytes"),
               target(f"max(vigil_monitor_ingest_lag_seconds{mv})", "ingest lag (s)")], unit="short"),
        panel("Missing values (latest window)", "timeseries",
              [target(f"sum by (feature, kind) (vigil_monitor_missing_values{mv}) > 0", "{{feature}} {{kind}}")]),
        *process_panels("vigil-monitor"),
    ]
    marks = {"name": "Concept drift", "datasource": DS, "enable": True, "iconColor": "red", "step": "30s",
             "expr": "changes(vigil_monitor_concept_drift_detections_total[1m]) > 0",
             "titleFormat": "concept drift", "textFormat": "{{model}} v{{version}}"}
    return dashboard("vigil-monitor", "Vigil / Monitor", panels, [marks])


def alert_rules() -> list[dict[str, Any]]:
    """Every `alert:` rule of the Prometheus rule files, read once."""
    rules = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


def grafana_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """One Prometheus alert as a Grafana-managed rule with the same expression.

    A Prometheus alert expression returns the firing series; their values may be 0 (`up
    == 0`) or negative, so no threshold fits all. Query A is the expression itself (its
    value feeds the annotations as $values.A), and the condition B = `$A * 0 + 1` is 1
    for every firing series, keeping its labels; an empty result means OK, not no-data.
    """
    query = {"refId": "A", "datasourceUid": DATASOURCE_UID, "relativeTimeRange": {"from": 900, "to": 0},
             "model": {"refId": "A", "expr": rule["expr"].strip(), "instant": True}}
    condition = {"refId": "B", "datasourceUid": "__expr__", "relativeTimeRange": {"from": 0, "to": 0},
                 "model": {"refId": "B", "type": "math", "expression": "$A * 0 + 1"}}
    annotations = {k: v.replace("$value", "$values.A.Value") for k, v in rule["annotations"].items()}
    uid = "vigil-" + "".join(c for c in rule["alert"].lower() if c.isalnum())[5:]
    return {
        "uid": uid[:40], "title": rule["alert"], "condition": "B", "data": [query, condition],
        "for": rule.get("for", "0m"), "noDataState": "OK", "execErrState": "Error",
        "labels": rule.get("labels", {}), "annotations": annotations,
    }


def alerting() -> dict[str, Any]:
    by_group: dict[str, list[dict[str, Any]]] = {}
    for rule in alert_rules():
        by_group.setdefault(rule["labels"]["category"], []).append(grafana_rule(rule))
    groups = [{"orgId": 1, "name": f"vigil-{name}", "folder": "Vigil", "interval": "1m", "rules": rules}
              for name, rules in sorted(by_group.items())]
    return {"apiVersion": 1, "groups": groups}


def outputs() -> dict[Path, str]:
    """Generated file -> content."""
    header = "# Generated by deploy/grafana/build.py from deploy/prometheus/rules/*.yml - do not edit.\n"
    return {
        DASHBOARDS_DIR / "vigil-service.json": json.dumps(service_dashboard(), indent=2) + "\n",
        DASHBOARDS_DIR / "vigil-monitor.json": json.dumps(monitor_dashboard(), indent=2) + "\n",
        ALERTING_FILE: header + yaml.safe_dump(alerting(), sort_keys=False, width=120),
    }


def main() -> int:
    for path, text in outputs().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(DEPLOY.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
