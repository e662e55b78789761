"""One served batch: the record that travels from the batcher to the monitor's wire and the log.

The serving worker builds it from the batch it just answered (column views, no copies);
its profile agent process profiles it for the monitor and appends it to the prediction
log. It crosses the process boundary pickled by the multiprocessing queue, or, when that
queue is full, as a file in the raw spool written by `encode`: a JSON header plus the
raw array bytes (no pickle on disk, so a file under the spool dir can never run code).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import orjson


@dataclass
class ServedBatch:
    """The rows of one served batch, as the model saw them, with what it answered."""

    model: str
    version: str
    columns: dict[str, np.ndarray]  # one array per feature, schema order
    predictions: np.ndarray  # labels (classifiers) or values (regressors)
    task: str = "classification"
    scores: np.ndarray | None = None  # [rows, classes] probabilities
    classes: Sequence[Any] = ()
    request_ids: Sequence[str] | None = None  # None: "<batch_id>-<row>"
    batch_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    timestamp: float = field(default_factory=time.time)  # when it was served (event time)
    row_times: np.ndarray | None = None  # per row, when the batches were merged; None: all `timestamp`

    @property
    def rows(self) -> int:
        return len(self.predictions)

    def served_at(self) -> np.ndarray:
        """When each row was served (Unix seconds)."""
        return self.row_times if self.row_times is not None else np.full(self.rows, float(self.timestamp))

    def ids(self) -> list[str]:
        """One request id per row."""
        if self.request_ids is None:
            return [f"{self.batch_id}-{i}" for i in range(self.rows)]
        return [str(i) for i in self.request_ids]


_POW10 = None  # lazily: 10.0 ** (6 - e) for every decimal exponent a double can have
_POW10_SPAN = 400


def widen_float32(values: np.ndarray) -> np.ndarray:
    """float32 model inputs as the float64 numbers the client most likely sent.

    The service hands over the float32 tensor the model saw: 5.1 arrives as
    5.099999904632568, which against a float64 reference full of ties (iris: 29 rows of
    petal_width 0.2) moves whole tie groups across CDF steps and reads as a KS shift.
    Rounding to float32's 7 significant digits gives back 5.1. The profiles and the
    prediction log both apply it, so they agree on every value. Bit for bit the original
    `round(x * 10**(6-e)) / 10**(6-e)` (checked once on all 2^32 bit patterns; the tests
    check 2 million random ones and the edges), with the power of ten from a table instead
    of `pow` per value: measured 2x faster (7.5 -> 3.5 ns/value).
    """
    global _POW10
    if _POW10 is None:
        with np.errstate(over="ignore"):  # same `**` as the formula, once per exponent
            _POW10 = 10.0 ** (6 - np.arange(-_POW10_SPAN, _POW10_SPAN, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):  # signalling NaNs warn when cast
        wide = np.asarray(values, dtype=np.float64)
        exponent = np.abs(wide)
        np.log10(exponent, out=exponent)
        np.floor(exponent, out=exponent)
        keep = ~np.isfinite(exponent)  # 0, inf, NaN: returned as they are
        exponent[keep] = 0.0
        scale = _POW10[exponent.astype(np.int64) + _POW10_SPAN]
        out = wide * scale
        np.round(out, out=out)
        out /= scale
    out[keep] = wide[keep]
    return out


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


def encode(batch: ServedBatch) -> bytes:
    """The batch as bytes: a JSON header + raw array bytes (no pickle, fast: tens of µs)."""
    parts: list[bytes] = []
    offset = [0]
    arrays = {name: _pack(col, parts, offset) for name, col in batch.columns.items()}
    header = {
        "model": batch.model, "version": batch.version, "task": batch.task, "classes": list(batch.classes),
        "batch_id": batch.batch_id, "timestamp": batch.timestamp, "ids": batch.ids(),
        "features": arrays, "predictions": _pack(batch.predictions, parts, offset),
        "scores": None if batch.scores is None else _pack(np.asarray(batch.scores, dtype=float), parts, offset),
        "row_times": None if batch.row_times is None else _pack(np.asarray(batch.row_times, dtype=float), parts, offset),
    }
    head = orjson.dumps(header, option=orjson.OPT_SERIALIZE_NUMPY)
    return b"".join([_MAGIC, len(head).to_bytes(4, "little"), head, *parts])


def decode(blob: bytes) -> ServedBatch:
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
        row_times = None
        if header.get("row_times") is not None:
            row_times, pos = _unpack(header["row_times"], tail, pos)
        return ServedBatch(header["model"], header["version"], columns, predictions, header["task"], scores,
                           header["classes"], header["ids"], header["batch_id"], float(header["timestamp"]), row_times)
    except (KeyError, TypeError, orjson.JSONDecodeError) as exc:
        raise ValueError(f"not a raw batch: {exc}") from None
