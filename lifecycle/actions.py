"""What a retraining trigger does: a local job or a webhook.

VIGIL_RETRAIN_ACTION=local runs `retrain` in a background thread of the caller (one
at a time per model: the lock in lifecycle/retrain.py). VIGIL_RETRAIN_ACTION=webhook
POSTs to VIGIL_RETRAIN_WEBHOOK_URL with the secret in VIGIL_RETRAIN_WEBHOOK_HEADER
(verbatim, e.g. "Bearer ghp_..." for GitHub, or a Jenkins "user:token" basic value):
either Vigil's own JSON (style "generic", for Jenkins' generic webhook trigger) or a
GitHub `workflow_dispatch` body (style "github": {"ref": ..., "inputs": {...}}).
Alertmanager's payloads are read in lifecycle/alerts.py.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lifecycle.errors import LifecycleError
from vigil.config import Settings

log = logging.getLogger("vigil.lifecycle")
WEBHOOK_TIMEOUT_S = 10.0

@dataclass
class Action:
    """One thing the lifecycle did (or refused to do) in response to a signal."""

    kind: str  # retrain | rollback-check | ignored
    model: str
    detail: str = ""
    ok: bool = True
    data: dict[str, Any] = field(default_factory=dict)


def trigger_retrain(settings: Settings, model: str, evidence: dict[str, Any], wait: bool = False) -> Action:
    """Start a retraining of `model` through the configured action."""
    if settings.retrain_action == "webhook":
        return call_webhook(settings, model, evidence)
    return _local(settings, model, evidence, wait)


def call_webhook(settings: Settings, model: str, evidence: dict[str, Any]) -> Action:
    """POST the trigger to the configured URL; a non-2xx answer is a failed action, not an exception."""
    import requests

    if not settings.retrain_webhook_url:
        raise LifecycleError("VIGIL_RETRAIN_ACTION=webhook needs VIGIL_RETRAIN_WEBHOOK_URL")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if settings.retrain_webhook_secret:
        headers[settings.retrain_webhook_header] = settings.retrain_webhook_secret
    body = _webhook_body(settings, model, evidence)
    try:
        response = requests.post(settings.retrain_webhook_url, json=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S)
    except requests.RequestException as exc:
        return Action("retrain", model, f"webhook {settings.retrain_webhook_url} unreachable: {exc}", ok=False)
    ok = 200 <= response.status_code < 300
    detail = f"webhook {settings.retrain_webhook_url} answered {response.status_code}"
    return Action("retrain", model, detail, ok=ok, data={"status": response.status_code})


def _webhook_body(settings: Settings, model: str, evidence: dict[str, Any]) -> dict[str, Any]:
    if settings.retrain_webhook_style == "github":
        # workflow_dispatch inputs must be strings, and GitHub caps their number at 10.
        return {"ref": settings.retrain_webhook_ref, "inputs": {
            "model": model,
            "reason": str(evidence.get("reason", "drift"))[:500],
            "windows": ",".join(map(str, evidence.get("windows", []))),
            "features": ",".join(evidence.get("features", [])),
        }}
    return {"event": "vigil.retrain", "model": model, "at": time.time(), "evidence": evidence}


_running: dict[str, threading.Thread] = {}


def _local(settings: Settings, model: str, evidence: dict[str, Any], wait: bool) -> Action:
    from lifecycle.retrain import retrain

    thread = _running.get(model)
    if thread is not None and thread.is_alive():
        return Action("retrain", model, "a retraining is already running in this process", ok=False)
    outcome: dict[str, Any] = {}

    def job() -> None:
        try:
            result = retrain(settings, model, auto_promote=settings.auto_promote, evidence=evidence)
            outcome.update(version=result.version, stage=result.stage)
            log.info("%s", result.summary())
        except LifecycleError as exc:  # busy, bad data: logged and audited by the caller's record
            outcome["error"] = str(exc)
            log.warning("retraining %s: %s", model, exc)

    thread = threading.Thread(target=job, name=f"vigil-retrain-{model}", daemon=True)
    _running[model] = thread
    thread.start()
    if wait:
        thread.join()
        return Action("retrain", model, outcome.get("error", f"registered v{outcome.get('version')}"),
                      ok="error" not in outcome, data=outcome)
    return Action("retrain", model, "local retraining started", data=outcome)
