"""Prometheus and Alertmanager configs for the topology, derived from deploy/'s production files.

Only what a one-machine run needs changes: the targets (three replicas, one monitor),
the Alertmanager address, the webhook URL (the monitor's /v1/actions/alert), the
bearer token file, and time: scrape/evaluate every second, `for:` and Alertmanager's
group waits of a few seconds instead of minutes. The production rule files are read,
never edited: shortened copies go into the run's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from vigil.paths import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
RULES = DEPLOY / "prometheus" / "rules"
ALERTMANAGER_CONFIG = DEPLOY / "alertmanager" / "alertmanager.yml"
FOR = "2s"  # every alert's `for:` in the topology (production: 1-5 minutes)


def _host(url: str) -> str:
    return url.split("//", 1)[1].rstrip("/")


def short_rules(folder: Path) -> list[Path]:
    """Copies of the production rule files with `for:` shortened to FOR; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(RULES.glob("*.yml")):
        rules = yaml.safe_load(path.read_text())
        for group in rules["groups"]:
            for rule in group["rules"]:
                if "for" in rule:
                    rule["for"] = FOR
        target = folder / path.name
        target.write_text(yaml.safe_dump(rules, sort_keys=False))
        written.append(target)
    return written


def prometheus_config(folder: Path, replicas: list[str], monitor: str, alertmanager: str) -> Path:
    """deploy/prometheus/prometheus.yml pointed at this run's processes."""
    cfg: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(p) for p in short_rules(folder / "rules")]
    cfg["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [_host(alertmanager)]}]}]}
    targets = {"vigil-service": [_host(r) for r in replicas], "vigil-monitor": [_host(monitor)]}
    for job in cfg["scrape_configs"]:
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
    path = folder / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def alertmanager_config(folder: Path, monitor: str, token_file: Path) -> Path:
    """deploy/alertmanager/alertmanager.yml with the monitor's webhook and second-scale waits."""
    cfg: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    routes = [cfg["route"], *cfg["route"].get("routes", [])]
    for route in routes:
        route.update(group_wait="1s", group_interval="2s", repeat_interval="1m")
    for receiver in cfg["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = f"{monitor}/v1/actions/alert"
            hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    path = folder / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
