"""The monitor's half of the profile-stream contract (see CONTRACT.md, version 2; version 1 accepted).

Only parsing and validation: nothing is imported from the service side.
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import dataclass
from typing import Any

import orjson

CONTRACT_VERSION = 2  # what this monitor documents and producers send
CONTRACT_VERSIONS = (1, 2)  # what it accepts: v1 producers keep working through a rolling upgrade
TASKS = ("classification", "regression")


class WireError(ValueError):
    """A message the monitor refuses; `status` is the HTTP code, `reason` the metric label."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class ProfileMessage:
    """One profile of served rows as received from a producer (contract v2, or v1 during an upgrade)."""

    contract: int
    batch_id: str
    producer: str
    model: str
    version: str
    task: str
    timestamp: float
    rows: int
    profile: bytes
    classes: list[Any]


def _field(data: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in data:
        raise WireError(400, "malformed", f"missing field {name!r}")
    value = data[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise WireError(400, "malformed", f"field {name!r} has the wrong type ({type(value).__name__})")
    return value


def _rows_list(data: dict[str, Any], name: str, rows: int) -> list[Any]:
    values = _field(data, name, list)
    if len(values) != rows:
        raise WireError(400, "malformed", f"field {name!r} has {len(values)} entries for {rows} rows")
    return values


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float))


def parse(body: bytes) -> ProfileMessage:
    """Validate a request body; raises `WireError` naming the problem."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WireError(400, "malformed", "body is not JSON") from None
    if not isinstance(data, dict):
        raise WireError(400, "malformed", "body must be a JSON object")
    contract = data.get("v")
    if contract not in CONTRACT_VERSIONS:
        raise WireError(422, "version", f"unsupported contract version {contract!r} (this monitor speaks "
                                        f"{' and '.join(map(str, CONTRACT_VERSIONS))})")
    batch_id = _field(data, "batch_id", str)
    if not 0 < len(batch_id) <= 128:
        raise WireError(400, "malformed", "batch_id must have 1 to 128 characters")
    task = _field(data, "task", str)
    if task not in TASKS:
        raise WireError(400, "malformed", f"task must be one of {TASKS}, got {task!r}")
    rows = _field(data, "rows", int)
    if rows < 1:
        raise WireError(400, "malformed", "rows must be >= 1")
    timestamp = float(_field(data, "timestamp", (int, float)))
    if not math.isfinite(timestamp):
        raise WireError(400, "malformed", "timestamp must be finite")
    try:
        profile = base64.b64decode(_field(data, "profile", str), validate=True)
    except (binascii.Error, ValueError):
        raise WireError(400, "malformed", "profile is not valid base64") from None
    classes = data.get("classes") or []
    # anything but a list of JSON scalars is the sender's error, a 400
    if not isinstance(classes, list) or not all(_is_scalar(c) for c in classes):
        raise WireError(400, "malformed", "field 'classes' must be a list of JSON scalars")
    if contract == 1:
        _check_v1_rows(data, rows, len(classes))
    return ProfileMessage(
        contract=contract,
        batch_id=batch_id,
        producer=str(data.get("producer", "")),
        model=_field(data, "model", str),
        version=str(_field(data, "version", (str, int))),
        task=task,
        timestamp=timestamp,
        rows=rows,
        profile=profile,
        classes=list(classes),
    )


def _check_v1_rows(data: dict[str, Any], rows: int, classes: int) -> None:
    """A v1 message also carries per-row ids, predictions and scores: still checked, no longer used
    (labels join against the prediction log, which v1 producers write as well)."""
    scores = data.get("scores")
    if scores is not None:
        scores = _rows_list(data, "scores", rows)
        if any(not isinstance(s, list) or len(s) != classes for s in scores):
            raise WireError(400, "malformed", f"each scores row must have {classes} entries (one per class)")
        if not all(_is_number(x) for s in scores for x in s):
            raise WireError(400, "malformed", "scores must be numbers")
    if not all(_is_scalar(p) for p in _rows_list(data, "predictions", rows)):
        raise WireError(400, "malformed", "field 'predictions' must hold JSON scalars (one per row)")
    _rows_list(data, "request_ids", rows)


@dataclass(frozen=True)
class LabelRecord:
    """One posted label with its optional business fields (see CONTRACT.md, Labels)."""

    request_id: str
    label: Any
    outcome: bool | None = None  # e.g. converted or not
    value: float | None = None  # e.g. revenue


def _outcome(item: dict[str, Any], i: int) -> bool | None:
    raw = item.get("outcome")
    if raw is None:
        return None
    if isinstance(raw, bool) or raw in (0, 1):
        return bool(raw)
    raise WireError(400, "malformed", f"labels[{i}].outcome must be true/false (or 1/0), got {raw!r}")


def _value(item: dict[str, Any], i: int) -> float | None:
    raw = item.get("value")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise WireError(400, "malformed", f"labels[{i}].value must be a finite number, got {raw!r}")
    return float(raw)


def parse_label_records(body: bytes) -> list[LabelRecord]:
    """`[{"request_id", "label", "outcome"?, "value"?}, ...]` (or `{"labels": [...]}`)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise WireError(400, "malformed", "body is not JSON") from None
    if isinstance(data, dict):
        data = data.get("labels")
    if not isinstance(data, list):
        raise WireError(400, "malformed", 'expected a JSON list of {"request_id": ..., "label": ...}')
    records = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or "request_id" not in item or "label" not in item:
            raise WireError(400, "malformed", f"labels[{i}] needs 'request_id' and 'label'")
        label = item["label"]
        if not isinstance(label, (str, int, float)) or isinstance(label, float) and not math.isfinite(label):
            raise WireError(400, "malformed", f"labels[{i}].label must be a string or a finite number")
        records.append(LabelRecord(str(item["request_id"]), label, _outcome(item, i), _value(item, i)))
    return records
