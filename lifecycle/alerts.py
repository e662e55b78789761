"""Alertmanager's entry point: which alerts ask for which lifecycle check, and running it.

The monitor posts Alertmanager webhook payloads here (POST /v1/actions/alert): drift
alerts run the retraining check, quality alerts the rollback check, through exactly
the polling worker's `check_model`, so debounce, cooldown and the retraining lock apply
the same way whichever signal came first.
"""

from __future__ import annotations

from typing import Any

from lifecycle.actions import Action
from lifecycle.errors import LifecycleError
from lifecycle.worker import check_model
from vigil.config import Settings

# Alert names (deploy/prometheus/rules) and the `vigil_action` label that maps any alert to an action.
ALERT_ACTIONS = {"VigilDatasetDrift": "retrain", "VigilQualityDrop": "rollback-check"}
# Other alerts of these categories (feature/prediction/concept drift) run the same checks:
# the policies, not the alert, decide whether anything moves.
CATEGORY_ACTIONS = {"drift": "retrain", "quality": "rollback-check"}


def alert_action(labels: dict[str, Any]) -> str:
    """The action an alert asks for: its `vigil_action` label, its name, else its `category` ("" = none)."""
    return (labels.get("vigil_action") or ALERT_ACTIONS.get(labels.get("alertname", ""))
            or CATEGORY_ACTIONS.get(labels.get("category", ""), ""))


def _alert_labels(alert: Any, i: int) -> dict[str, str]:
    """An alert's labels, checked: Alertmanager sends objects whose label values are strings,
    and anything else is a 400 naming the alert, not a crash."""
    labels = alert.get("labels", {}) if isinstance(alert, dict) else None
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise LifecycleError(f"alerts[{i}] must be an object whose 'labels' is an object of strings")
    return labels


def handle_alert(settings: Settings, payload: dict[str, Any]) -> list[Action]:
    """Act on an Alertmanager webhook payload: drift alerts retrain, quality alerts check rollback.

    Only firing alerts with a `model` label act; `vigil_action` (retrain |
    rollback-check) overrides the mapping by alert name, then by `category`. Debounce, cooldown and the
    retraining lock apply exactly as for the polling worker.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
        raise LifecycleError("not an Alertmanager payload: expected an object with an 'alerts' list")
    actions: list[Action] = []
    wanted: dict[tuple[str, str], dict[str, Any]] = {}
    for i, alert in enumerate(payload["alerts"]):
        labels = _alert_labels(alert, i)
        model = labels.get("model", "")
        kind = alert_action(labels)
        if alert.get("status", payload.get("status")) != "firing" or not model or kind not in ALERT_ACTIONS.values():
            actions.append(Action("ignored", model, f"alert {labels.get('alertname', '?')}: nothing to do"))
            continue
        wanted.setdefault((kind, model), labels)  # one action per model and kind, however many alerts
    for (kind, model), labels in wanted.items():
        actions.extend(check_model(settings, model, retrain_check=kind == "retrain",
                                   rollback_check=kind == "rollback-check", source=f"alert {labels.get('alertname')}"))
    return actions
