"""What the profile agent pays per row, by the size of the records the worker hands over.

`python -m loadtest.agent_cost` builds iris-shaped ServedBatch records of 100, 500 and 2,500
rows (50,000 rows in all) and times, in CPU seconds, what the agent does with them: the
prediction log's append, the profile slices (append + build + serialize) and the log's flush.
The figures behind the worker's 100-ms hand-off (serving/producer/agent.py); medians of 5.

The last column is the log's compaction, which the agent runs once a minute: the same rows
written as FILES flushed files (a minute of 5-s flushes), then merged into one by
`vigil.predlog.files.compact`, per row.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from serving.producer.slices import Slicer
from vigil.predlog import files
from vigil.predlog.writer import RowLog
from vigil.served_batch import ServedBatch

ROWS = 50_000
FILES = 12  # a minute of the log's 5-s flushes
FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


def records(rows: int, rng: np.random.Generator) -> list[ServedBatch]:
    """ROWS rows as records of `rows`, ids growing like one worker's."""
    out, counter = [], 0
    for _ in range(ROWS // rows):
        ids = [f"1a2b3c-{counter + i:012x}" for i in range(rows)]
        counter += rows
        columns = {name: rng.random(rows).astype(np.float32) for name in FEATURES}
        out.append(ServedBatch("iris", "1", columns, rng.integers(0, 3, rows),
                               scores=rng.random((rows, 3)).astype(np.float32), classes=[0, 1, 2], request_ids=ids))
    return out


def cost(batches: list[ServedBatch]) -> tuple[float, float, float]:
    """µs per row: (log append, slices, log flush)."""
    log = RowLog(Path(tempfile.mkdtemp(prefix="vigil-agent-cost-")), flush_seconds=1e9)
    slicer = Slicer(60, 1.0, 65536)
    t0 = time.process_time()
    for batch in batches:
        log.append(batch)
    t1 = time.process_time()
    for batch in batches:
        slicer.add(batch)
    for piece in slicer.due(force=True):
        piece.message("cost")
    t2 = time.process_time()
    log.flush()
    t3 = time.process_time()
    return tuple((b - a) / ROWS * 1e6 for a, b in ((t0, t1), (t1, t2), (t2, t3)))  # type: ignore[return-value]


def compaction_cost(batches: list[ServedBatch]) -> float:
    """µs per row to merge the rows' FILES flushed files into one, as the agent's minutely pass does."""
    root = Path(tempfile.mkdtemp(prefix="vigil-agent-compact-"))
    try:
        return _compaction_cost(root, batches)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _compaction_cost(root: Path, batches: list[ServedBatch]) -> float:
    log = RowLog(root, flush_seconds=1e9)
    per_file = max(1, len(batches) // FILES)
    for i, batch in enumerate(batches, 1):
        log.append(batch)
        if i % per_file == 0:
            log.flush()
    log.flush()
    t0 = time.process_time()
    merged = files.compact(root, files.ROWS)
    spent = time.process_time() - t0
    if merged.merged_files < FILES:
        raise RuntimeError(f"compaction merged {merged.merged_files} files, expected {FILES}")
    return spent / ROWS * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    print("rows a record | log append µs/row | slices µs/row | log flush µs/row | total | compaction µs/row")
    for rows in (100, 500, 2_500):
        batches = records(rows, rng)
        runs = [cost(batches) for _ in range(5)]
        append, slices, flush = (statistics.median(r[i] for r in runs) for i in range(3))
        compaction = statistics.median(compaction_cost(batches) for _ in range(5))
        print(f"{rows:>13,} | {append:17.2f} | {slices:13.2f} | {flush:16.2f} | {append + slices + flush:5.2f} | "
              f"{compaction:17.2f}")


if __name__ == "__main__":
    main()
