"""The lifecycle worker: poll the monitor, apply RollbackPolicy and DriftTrigger, act, audit.

`run_actions(settings)` loops every VIGIL_LIFECYCLE_POLL_SECONDS over the models the
monitor has seen; `check_model` is one pass for one model (also used by
`handle_alert`). Inputs come from the monitor's GET /v1/drift (per-window drift
verdicts and label quality, see monitor/state.py) and the registry (champion alias
and the move history); every decision is appended to $VIGIL_HOME/lifecycle/audit.jsonl.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from lifecycle import moves
from lifecycle import stages as S
from lifecycle.actions import Action, trigger_retrain
from lifecycle.audit import audit, load_state, save_state
from lifecycle.errors import LifecycleError
from lifecycle.gate import LOWER_IS_BETTER, gate_metric, metric_of
from lifecycle.policy import ALERT, RETRAIN, ROLLBACK, DriftTrigger, DriftWindow, RollbackPolicy, WindowQuality
from vigil.auth import auth_headers
from vigil.config import Settings
from vigil.registry import connect

log = logging.getLogger("vigil.lifecycle")
AUTO_ACTOR = "vigil-auto"
HISTORY_WINDOWS = 50
_TIMEOUT_S = 10.0


class MonitorUnavailable(LifecycleError):
    """The monitor did not answer; the worker retries at its next poll."""


def monitor_drift(settings: Settings, model: str, version: str | None = None) -> list[dict[str, Any]]:
    """GET /v1/drift for `model` (and `version`): one entry per version the monitor knows."""
    import requests

    params = {"model": model, "windows": str(HISTORY_WINDOWS)}
    if version is not None:
        params["version"] = version
    url = settings.monitor_url.rstrip("/") + "/v1/drift"
    try:
        response = requests.get(url, params=params, timeout=_TIMEOUT_S, verify=settings.tls_verify,
                                headers=auth_headers(settings))
        response.raise_for_status()
        return list(response.json().get("versions", []))
    except (requests.RequestException, ValueError) as exc:
        raise MonitorUnavailable(f"monitor at {settings.monitor_url} did not answer /v1/drift: {exc}") from None


def check_model(
    settings: Settings,
    model: str,
    retrain_check: bool = True,
    rollback_check: bool = True,
    source: str = "poll",
    now: float | None = None,
) -> list[Action]:
    """One pass of both policies for one model; returns what was done."""
    now = time.time() if now is None else now
    client = connect(settings)
    registered = S.registered_model(client, model)
    champion = registered.aliases.get(S.ALIAS_OF[S.PRODUCTION])
    champion = str(champion) if champion is not None else None
    history = S.history(client, model)
    actions = []
    if rollback_check and champion is not None:
        actions.append(_check_rollback(settings, client, model, champion, history, now, source))
    if retrain_check:
        actions.append(_check_drift(settings, model, champion, now, source))
    return actions


def _check_rollback(
    settings: Settings, client: Any, model: str, champion: str, history: list[S.Move], now: float, source: str
) -> Action:
    version = client.get_model_version(model, champion)
    metric = gate_metric(settings, version)
    lower = metric in LOWER_IS_BETTER
    previous = moves.previous_champion(history, champion)
    moved_at = max((m.at for m in history if m.to_stage == S.PRODUCTION and m.version == champion), default=None)
    auto_at = max((m.at for m in history if m.kind == S.AUTO and m.to_stage == S.PRODUCTION), default=None)
    # Only windows served after this version became champion judge it.
    since = (moved_at or 0.0) - settings.monitor_window_seconds
    windows = [w for w in _quality_windows(settings, model, champion, metric) if w.window_start >= since]
    baseline = _baseline(settings, client, model, previous, metric) if previous else None
    decision = RollbackPolicy.from_settings(settings, lower).decide(
        champion, previous, baseline, windows, now, moved_at, auto_at)
    record = audit(settings, model, "rollback", decision, source=source, metric=metric)
    if decision.action == ROLLBACK and previous is not None:
        try:
            move = moves.rollback(settings, model, to=previous, reason=decision.reason, actor=AUTO_ACTOR, kind=S.AUTO)
        except LifecycleError as exc:
            audit(settings, model, "rollback", decision, source=source, executed=False, error=str(exc))
            return Action("rollback", model, f"rollback refused: {exc}", ok=False, data=record)
        log.warning("%s", decision.reason)
        return Action("rollback", model, move.describe(), data={**record, "move": move.seq})
    if decision.action == ALERT:
        log.warning("%s: %s", model, decision.reason)
    return Action(f"rollback-{decision.action}", model, decision.reason, data=record)


def _quality_windows(settings: Settings, model: str, version: str, metric: str) -> list[WindowQuality]:
    entries = monitor_drift(settings, model, version)
    out = []
    for entry in entries:
        for h in entry.get("history", []):
            q = h.get("quality") or {}
            value = q.get(metric)
            out.append(WindowQuality(int(h["window_start"]), float(value) if value is not None else None,
                                     int(q.get("labels", 0))))
    return sorted(out, key=lambda w: w.window_start)


def _baseline(settings: Settings, client: Any, model: str, previous: str, metric: str) -> float | None:
    """The previous champion's recorded quality: its live labelled windows, else its holdout metric."""
    try:
        live = [w.value for w in _quality_windows(settings, model, previous, metric)
                if w.value is not None and w.labels >= settings.rollback_min_labels]
    except MonitorUnavailable:
        live = []
    if live:
        return sum(live) / len(live)
    return metric_of(client.get_model_version(model, previous), metric)


def _check_drift(settings: Settings, model: str, champion: str | None, now: float, source: str) -> Action:
    entries = monitor_drift(settings, model, champion)
    if not entries:
        return Action("retrain-hold", model, "the monitor has no windows for this model yet")
    entry = max(entries, key=lambda e: int(e["version"]) if str(e["version"]).isdigit() else 0)
    windows = _drift_windows(entry)
    state = load_state(settings)
    mine = state.get("retrain", {}).get(model, {})
    decision = DriftTrigger.from_settings(settings).decide(windows, now, mine.get("at"), mine.get("window"))
    record = audit(settings, model, "retrain", decision, source=source, version=entry["version"])
    if decision.action != RETRAIN:
        return Action("retrain-hold", model, decision.reason, data=record)
    evidence = {**decision.evidence, "reason": decision.reason, "model": model, "version": entry["version"]}
    # Remember the trigger before acting: a crash mid-retraining must not re-trigger on the same streak.
    state.setdefault("retrain", {})[model] = {"at": now, "window": max(w.window_start for w in windows)}
    save_state(settings, state)
    action = trigger_retrain(settings, model, evidence)
    audit(settings, model, "retrain", decision, source=source, executed=action.ok, detail=action.detail)
    return action


def _drift_windows(entry: dict[str, Any]) -> list[DriftWindow]:
    latest = entry.get("latest") or {}
    scores = {name: f.get("effect_size") for name, f in (latest.get("features") or {}).items()}
    return [
        DriftWindow(int(h["window_start"]), bool(h["dataset_drift"]), float(h.get("drift_share") or 0.0),
                    tuple(h.get("drifted_features", ())),
                    scores if h["window_start"] == latest.get("window_start") else {})
        for h in entry.get("history", [])
    ]


def run_actions(settings: Settings, once: bool = False, stop: threading.Event | None = None) -> list[Action]:
    """Poll the monitor and act, every VIGIL_LIFECYCLE_POLL_SECONDS until `stop` is set (or one pass)."""
    stop = stop or threading.Event()
    done: list[Action] = []
    while True:
        for model in _monitored_models(settings):
            try:
                done.extend(check_model(settings, model))
            except LifecycleError as exc:  # monitor down, model gone: try again next poll
                log.warning("lifecycle check of %s: %s", model, exc)
        if once or stop.wait(settings.lifecycle_poll_seconds):
            return done


def _monitored_models(settings: Settings) -> list[str]:
    try:
        return sorted({entry["model"] for entry in monitor_drift_all(settings)})
    except MonitorUnavailable as exc:
        log.warning("%s", exc)
        return []


def monitor_drift_all(settings: Settings) -> list[dict[str, Any]]:
    """Every version the monitor knows (GET /v1/status)."""
    import requests

    try:
        response = requests.get(settings.monitor_url.rstrip("/") + "/v1/status", timeout=_TIMEOUT_S,
                                verify=settings.tls_verify, headers=auth_headers(settings))
        response.raise_for_status()
        return list(response.json().get("versions", []))
    except (requests.RequestException, ValueError) as exc:
        raise MonitorUnavailable(f"monitor at {settings.monitor_url} did not answer /v1/status: {exc}") from None
