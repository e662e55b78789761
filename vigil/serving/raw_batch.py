"""A served batch as raw arrays: what a worker hands to its profile agent process.

It crosses the process boundary pickled by the multiprocessing queue (small arrays:
cheap), or, when that queue is full, as a file in the raw spool: a JSON header plus
the raw array bytes (no pickle on disk: a file under the spool dir can never run code).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson


@dataclass
class RawBatch:
    model: str
    version: str
    task: str
    columns: dict[str, np.ndarray]  # one array per feature, schema order
    predictions: np.ndarray
    scores: np.ndarray | None
    classes: list[Any]
    request_ids: list[str]
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)

    @property
    def rows(self) -> int:
        return len(self.predictions)


_MAGIC = b"VRB1"


def _pack(arr: np.ndarray, parts: list[bytes], offset: list[int]) -> dict[str, Any]:
    """Describe one array; numbers go to the binary tail, text stays in the JSON header."""
    arr = np.asarray(arr)
    if arr.dtype.kind in "OUS":
        return {"text": [str(v) for v in arr.ravel().tolist()], "shape": list(arr.shape)}
    data = np.ascontiguousarray(arr).tobytes()
    parts.append(data)
    offset[0] += len(data)
    return {"dtype": arr.dtype.str, "shape": list(arr.shape), "end": offset[0]}


def _unpack(spec: dict[str, Any], tail: memoryview, start: int) -> tuple[np.ndarray, int]:
    if "text" in spec:
        return np.asarray(spec["text"], dtype=object).reshape(spec["shape"]), start
    end = spec["end"]
    return np.frombuffer(tail[start:end], dtype=np.dtype(spec["dtype"])).reshape(spec["shape"]).copy(), end


def encode(batch: RawBatch) -> bytes:
    """The batch as bytes: a JSON header + raw array bytes (no pickle, fast: tens of µs)."""
    parts: list[bytes] = []
    offset = [0]
    arrays = {name: _pack(col, parts, offset) for name, col in batch.columns.items()}
    header = {
        "model": batch.model, "version": batch.version, "task": batch.task, "classes": batch.classes,
        "batch_id": batch.batch_id, "timestamp": batch.timestamp, "ids": [str(i) for i in batch.request_ids],
        "features": arrays, "predictions": _pack(batch.predictions, parts, offset),
        "scores": None if batch.scores is None else _pack(np.asarray(batch.scores, dtype=float), parts, offset),
    }
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join([_MAGIC, len(head).to_bytes(4, "little"), head, *parts])


def decode(blob: bytes) -> RawBatch:
    """Inverse of `encode`; raises ValueError on bytes that are not one."""
    try:
        if blob[:4] != _MAGIC:
            raise ValueError("bad magic")
        size = int.from_bytes(blob[4:8], "little")
        header = orjson.loads(blob[8:8 + size])
        tail, pos = memoryview(blob)[8 + size:], 0
        columns = {}
        for name, spec in header["features"].items():
            columns[name], pos = _unpack(spec, tail, pos)
        predictions, pos = _unpack(header["predictions"], tail, pos)
        scores = None
        if header["scores"] is not None:
            scores, pos = _unpack(header["scores"], tail, pos)
        return RawBatch(header["model"], header["version"], header["task"], columns, predictions, scores,
                        header["classes"], header["ids"], header["batch_id"], float(header["timestamp"]))
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"not a raw batch: {exc}") from None
