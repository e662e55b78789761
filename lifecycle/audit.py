"""Local state of the lifecycle worker: the audit log of decisions and trigger bookkeeping.

Both live under $VIGIL_HOME/lifecycle/: `audit.jsonl` (one JSON record per decision,
append-only) and `state.json` (when each model last triggered a retraining). Moves
themselves are recorded on the registry (lifecycle/stages.py), not here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from lifecycle.policy import Decision
from vigil.config import Settings


def lifecycle_dir(settings: Settings) -> Path:
    path = settings.home / "lifecycle"
    path.mkdir(parents=True, exist_ok=True)
    return path


def audit(settings: Settings, model: str, policy: str, decision: Decision, **extra: Any) -> dict[str, Any]:
    """Append one decision to audit.jsonl and return the record."""
    record = {
        "at": time.time(), "model": model, "policy": policy, "action": decision.action,
        "reason": decision.reason, "evidence": decision.evidence, **extra,
    }
    line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
    # O_APPEND keeps concurrent writers' lines whole (each write is one short line).
    fd = os.open(lifecycle_dir(settings) / "audit.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
    return record


def read_audit(settings: Settings) -> list[dict[str, Any]]:
    """Every audit record, oldest first."""
    path = settings.home / "lifecycle" / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_state(settings: Settings) -> dict[str, Any]:
    path = settings.home / "lifecycle" / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def save_state(settings: Settings, state: dict[str, Any]) -> None:
    path = lifecycle_dir(settings) / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    os.replace(tmp, path)  # atomic: a crash never leaves half a file
