"""The prediction log's files, writer, sampling, DuckDB views, retention and crash bound."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitor.wire import WireError, parse_label_records
from vigil.predlog import files, query
from vigil.predlog.writer import RowLog, append_labels
from vigil.served_batch import ServedBatch, decode, encode

T0 = 1_800_000_000.0


def _batch(i: int, rows: int = 8, ts: float = T0, version: str = "1", seed: int = 0) -> ServedBatch:
    rng = np.random.default_rng(seed * 1000 + i)
    return ServedBatch(
        "iris", version, {"a": rng.random(rows).astype(np.float32), "b": rng.normal(size=rows)},
        rng.integers(0, 3, rows), scores=rng.dirichlet(np.ones(3), rows), classes=[0, 1, 2],
        request_ids=[f"b{i}-{j}" for j in range(rows)], batch_id=f"b{i}", timestamp=ts,
    )


def test_every_row_once_atomic_and_duckdb_agrees_with_pandas(tmp_path: Path) -> None:
    log = RowLog(tmp_path, flush_seconds=60, max_rows_per_second=0)
    batches = [_batch(i, version="1" if i < 30 else "2") for i in range(50)]
    for i, b in enumerate(batches):
        log.append(b)
        if i % 7 == 0:
            log.flush()
    log.flush()
    assert not list(tmp_path.rglob(".tmp-*"))  # nothing half-written is left visible
    labels = [{"request_id": f"b{i}-0", "label": i % 3, "outcome": i % 2 == 0, "value": float(i)} for i in range(0, 50, 5)]
    append_labels(tmp_path, labels, now=T0 + 10)
    append_labels(tmp_path, [{"request_id": "b0-0", "label": 2, "outcome": False, "value": 99.0}], now=T0 + 20)

    expected = pd.DataFrame({
        "request_id": [r for b in batches for r in b.request_ids],
        "version": [b.version for b in batches for _ in b.request_ids],
        "b": np.concatenate([b.columns["b"] for b in batches]),
    })
    got, _ = query.query(tmp_path, "SELECT request_id, version, b FROM predictions")
    assert sorted(got["request_id"]) == sorted(expected["request_id"])  # every row, exactly once
    answer, _ = query.query(tmp_path, "SELECT version, COUNT(*) AS n, AVG(b) AS mean_b FROM predictions GROUP BY 1 ORDER BY 1")
    truth = expected.groupby("version").agg(n=("b", "size"), mean_b=("b", "mean")).reset_index()
    assert answer["n"].tolist() == truth["n"].tolist()
    assert np.allclose(answer["mean_b"], truth["mean_b"], rtol=1e-12)
    joined, _ = query.query(tmp_path, "SELECT request_id, label, outcome, value FROM predictions WHERE label IS NOT NULL ORDER BY value")
    assert len(joined) == 10
    latest = joined.set_index("request_id").loc["b0-0"]
    assert (latest["label"], bool(latest["outcome"]), latest["value"]) == ("2", False, 99.0)  # the latest label wins


def test_one_flush_holds_versions_whose_columns_differ(tmp_path: Path) -> None:
    # A hot swap inside one flush: version 2 drops feature "a", adds "c" and answers in text.
    log = RowLog(tmp_path, flush_seconds=60)
    log.append(_batch(0, rows=3))
    log.append(ServedBatch("iris", "2", {"b": np.array([1.5, 2.5]), "c": np.array([7, 8])}, np.array(["x", "y"]),
                           request_ids=["v2-0", "v2-1"], batch_id="v2", timestamp=T0 + 1))
    log.append(_batch(1, rows=2))
    assert log.flush() == 7
    frame, _ = query.query(tmp_path, "SELECT request_id, version, a, b, c, prediction, batch_id FROM served "
                                     "ORDER BY request_id")
    assert frame["request_id"].tolist() == ["b0-0", "b0-1", "b0-2", "b1-0", "b1-1", "v2-0", "v2-1"]
    assert frame["version"].tolist() == ["1"] * 5 + ["2"] * 2
    assert frame["batch_id"].tolist() == ["b0"] * 3 + ["b1"] * 2 + ["v2"] * 2
    assert frame["a"][:5].notna().all() and frame["a"][5:].isna().all()
    assert frame["c"][:5].isna().all() and frame["c"][5:].tolist() == [7, 8]
    assert frame["prediction"].tolist()[5:] == ["x", "y"]
    assert np.allclose(frame["b"][5:], [1.5, 2.5])


def test_compaction_merges_only_files_of_like_columns(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(files, "COMPACT_MIN_FILES", 2)
    log = RowLog(tmp_path, flush_seconds=60)
    text = ServedBatch("iris", "2", {"b": np.array([1.5])}, np.array(["x"]), request_ids=["v2-0"], batch_id="v2",
                       timestamp=T0)
    for batch in (_batch(0), text, _batch(1)):
        log.append(batch)
        log.flush()
    assert files.compact(tmp_path, files.ROWS).merged_files == 2  # the two version-1 files
    partition = next((tmp_path / files.ROWS).glob("model=iris/date=*"))
    assert sorted(files.level(p) for p in partition.glob("part-*.parquet")) == [0, 1]
    frame, _ = query.query(tmp_path, "SELECT COUNT(*) AS n FROM served")
    assert frame["n"][0] == 17


def test_fresh_files_are_lz4_compacted_ones_zstd_and_only_filtered_columns_keep_statistics(tmp_path: Path,
                                                                                            monkeypatch) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setattr(files, "COMPACT_MIN_FILES", 2)
    log = RowLog(tmp_path, flush_seconds=60)
    for i in range(2):
        log.append(_batch(i))
        log.flush()
    partition = next((tmp_path / files.ROWS).glob("model=iris/date=*"))

    def layout(path: Path) -> tuple[set[str], set[str]]:
        group = pq.ParquetFile(path).metadata.row_group(0)
        columns = [group.column(j) for j in range(group.num_columns)]
        return {c.compression for c in columns}, {c.path_in_schema for c in columns if c.is_stats_set}

    for fresh in partition.glob("part-*.parquet"):
        codecs, with_stats = layout(fresh)
        assert codecs == {"LZ4"}
        assert with_stats == {"request_id", "batch_id", "model", "version", "task", "served_at"}
    assert files.compact(tmp_path, files.ROWS).merged_files == 2
    (merged,) = partition.glob("part-*.parquet")
    codecs, with_stats = layout(merged)
    assert codecs == {"ZSTD"} and "request_id" in with_stats and "a" not in with_stats
    frame, _ = query.query(tmp_path, "SELECT request_id, a FROM served ORDER BY request_id")
    assert frame["request_id"].tolist() == sorted(f"b{i}-{j}" for i in range(2) for j in range(8))
    expected = np.concatenate([_batch(i).columns["a"] for i in range(2)])
    assert np.allclose(np.sort(frame["a"]), np.sort(expected), rtol=1e-6)


def test_request_ids_that_are_not_text_are_logged_as_their_text(tmp_path: Path) -> None:
    log = RowLog(tmp_path, flush_seconds=60)
    odd = ServedBatch("iris", "1", {"b": np.array([1.0, 2.0, 3.0])}, np.array([0, 1, 2]), request_ids=[7, None, "x"],
                      batch_id="odd", timestamp=T0)
    log.append(_batch(0, rows=2))
    log.append(odd)
    assert log.flush() == 5
    frame, _ = query.query(tmp_path, "SELECT request_id FROM served ORDER BY request_id")
    assert frame["request_id"].tolist() == sorted(["b0-0", "b0-1", "7", "None", "x"])


def test_sampling_keeps_all_under_the_limit_then_records_rates_that_reweight(tmp_path: Path) -> None:
    log = RowLog(tmp_path, flush_seconds=60, max_rows_per_second=100, seed=3)
    # 10 s at 40 rows/s (under the limit), then 10 s at 800 rows/s.
    for s in range(10):
        log.append(_batch(s, rows=40, ts=T0 + s))
    for s in range(10, 20):
        for k in range(20):
            log.append(_batch(s * 100 + k, rows=40, ts=T0 + s + k / 20))
    log.flush()
    frame, _ = query.query(tmp_path, "SELECT served_at, sampling_rate FROM served")
    slow, fast = frame[frame.served_at < T0 + 10], frame[frame.served_at >= T0 + 11]
    assert len(slow) == 400 and (slow.sampling_rate == 1.0).all()
    assert (fast.sampling_rate < 1.0).all() and len(fast) < 9 * 800 * 0.25
    estimate = (1.0 / frame.sampling_rate).sum()
    assert abs(estimate - 8400) / 8400 < 0.1, estimate  # Horvitz-Thompson re-weighting


def test_retention_deletes_old_partitions_and_only_them(tmp_path: Path) -> None:
    day = 86400
    now = T0 + 100 * day
    log = RowLog(tmp_path, flush_seconds=60)
    for age in (0, 5, 29, 31, 60):
        log.append(_batch(age, ts=now - age * day))
    log.flush()
    append_labels(tmp_path, [{"request_id": "x", "label": 1}], now=now - 40 * day)
    append_labels(tmp_path, [{"request_id": "y", "label": 1}], now=now)
    foreign = tmp_path / files.ROWS / "model=iris" / "notes"
    foreign.mkdir()
    rows_gone = files.expire(tmp_path, files.ROWS, retention_days=30, now=now).deleted_partitions
    labels_gone = files.expire(tmp_path, files.LABELS, retention_days=30, now=now).deleted_partitions
    assert sorted(p.name for p in rows_gone) == [f"date={files.day(now - a * day)}" for a in (60, 31)]
    assert [p.name for p in labels_gone] == [f"date={files.day(now - 40 * day)}"]
    left, _ = query.query(tmp_path, "SELECT DISTINCT request_id FROM served")
    assert sorted(left["request_id"].str.split("-").str[0]) == ["b0"] * 8 + ["b29"] * 8 + ["b5"] * 8
    assert foreign.is_dir()  # not a date partition: not ours to delete


def test_corrupt_and_foreign_files_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    log = RowLog(tmp_path, flush_seconds=60)
    log.append(_batch(1))
    written = log.flush()
    partition = next((tmp_path / files.ROWS).glob("model=iris/date=*"))
    (partition / "part-truncated.parquet").write_bytes(b"PAR1 not really")
    pd.DataFrame({"x": [1, 2]}).to_parquet(partition / "someone-elses.parquet")
    (partition / "README.txt").write_text("hello")
    with caplog.at_level(logging.WARNING, logger="vigil.predlog"):
        frame, view = query.query(tmp_path, "SELECT COUNT(*) AS n FROM predictions")
    assert frame["n"][0] == written == 8
    assert sorted(p.name for p, _ in view.skipped) == ["README.txt", "part-truncated.parquet", "someone-elses.parquet"]
    assert sum("skipping" in r.message for r in caplog.records) == 3


def test_compaction_merges_small_files_and_a_crash_midway_never_double_counts(tmp_path: Path) -> None:
    log = RowLog(tmp_path, flush_seconds=60)
    for i in range(files.COMPACT_MIN_FILES + 2):
        log.append(_batch(i))
        log.flush()
    partition = next((tmp_path / files.ROWS).glob("model=iris/date=*"))
    sources = sorted(partition.glob("part-*.parquet"))
    done = files.compact(tmp_path, files.ROWS)
    assert (done.merged_files, done.written_files) == (len(sources), 1)
    assert len(list(partition.glob("part-*.parquet"))) == 1
    # Crash between writing a merged file and deleting its sources: put the sources back.
    import pyarrow.parquet as pq

    merged = pq.read_table(next(partition.glob("part-*.parquet")))
    for i, name in enumerate(sources[:3]):
        pq.write_table(merged.slice(i * 8, 8).replace_schema_metadata(None), name)
    frame, _ = query.query(tmp_path, "SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS d FROM served")
    assert frame["n"][0] == frame["d"][0] == 8 * len(sources)
    files.compact(tmp_path, files.ROWS)  # the next pass removes the leftovers
    assert len(list(partition.glob("part-*.parquet"))) == 1


def test_compaction_reads_a_bounded_number_of_rows_and_never_merges_a_full_file_again(tmp_path: Path,
                                                                                       monkeypatch) -> None:
    # Bytes do not bound memory (repetitive rows compress hundreds of times): rows do.
    monkeypatch.setattr(files, "COMPACT_MIN_FILES", 2)
    monkeypatch.setattr(files, "COMPACT_SMALL_ROWS", 30)
    monkeypatch.setattr(files, "COMPACT_MAX_INPUT_ROWS", 40)
    log = RowLog(tmp_path, flush_seconds=60)
    for i in range(10):  # ten files of 8 rows
        log.append(_batch(i))
        log.flush()
    partition = next((tmp_path / files.ROWS).glob("model=iris/date=*"))

    import pyarrow.parquet as pq

    def sizes() -> list[int]:
        return sorted(pq.ParquetFile(p).metadata.num_rows for p in partition.glob("part-*.parquet"))

    assert files.compact(tmp_path, files.ROWS).merged_files == 5  # 40 rows at most per merge
    assert sizes() == [8, 8, 8, 8, 8, 40]
    assert files.compact(tmp_path, files.ROWS).merged_files == 5  # the 40-row file is not read again
    assert sizes() == [40, 40]
    assert files.compact(tmp_path, files.ROWS).merged_files == 0


def test_compaction_merges_files_of_one_level_only_so_a_busy_log_rewrites_each_row_once(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    monkeypatch.setattr(files, "COMPACT_MIN_FILES", 3)
    log = RowLog(tmp_path, flush_seconds=60)
    partition = None

    def flush(n: int, start: int) -> None:
        nonlocal partition
        for i in range(start, start + n):
            log.append(_batch(i))
            log.flush()
        partition = next((tmp_path / files.ROWS).glob("model=iris/date=*"))

    def levels() -> list[int]:
        return sorted(files.level(p) for p in partition.glob("part-*.parquet"))

    flush(3, 0)
    assert files.compact(tmp_path, files.ROWS).merged_files == 3
    assert levels() == [1]
    flush(3, 3)  # the merged file is not read again with the next flushes
    assert files.compact(tmp_path, files.ROWS).merged_files == 3
    assert levels() == [1, 1]
    flush(3, 6)
    assert files.compact(tmp_path, files.ROWS).merged_files == 3  # the three level-1 files wait for the next pass
    assert levels() == [1, 1, 1]
    assert files.compact(tmp_path, files.ROWS).merged_files == 3
    assert levels() == [2]
    frame, _ = query.query(tmp_path, "SELECT COUNT(*) AS n, COUNT(DISTINCT request_id) AS d FROM served")
    assert frame["n"][0] == frame["d"][0] == 9 * 8


_CRASH_WRITER = """
import sys, time, numpy as np
from pathlib import Path
from vigil.predlog.writer import RowLog
from vigil.served_batch import ServedBatch
log = RowLog(Path(sys.argv[1]), flush_seconds=float(sys.argv[2]))
i = 0
print("ready", flush=True)
while True:
    now = time.time()
    log.append(ServedBatch("m", "1", {"x": np.array([now])}, np.array([1.0]), task="regression", request_ids=[str(i)],
                           batch_id=str(i), timestamp=now))
    i += 1
    if log.due():
        log.flush()
    time.sleep(0.002)
"""


def test_kill9_loses_at_most_the_last_flush_interval(tmp_path: Path) -> None:
    interval = 0.5
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_WRITER, str(tmp_path), str(interval)], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(2.2)
        killed_at = time.time()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    frame, _ = query.query(tmp_path, "SELECT CAST(request_id AS BIGINT) AS i, served_at FROM served ORDER BY 1")
    ids = frame["i"].tolist()
    assert ids == list(range(len(ids))) and ids  # a gap-free prefix, no duplicates
    lost_seconds = killed_at - frame["served_at"].max()
    # The documented bound: one flush interval (+ the time a write and the kill take).
    assert lost_seconds <= interval + 0.25, lost_seconds


def test_raw_batch_round_trip_and_garbage_is_refused() -> None:
    batch = ServedBatch("m", "3", {"a": np.arange(4, dtype=np.float32), "c": np.array(["x", "y", "z", "w"], dtype=object)},
                        np.array(["p", "q", "p", "q"]), scores=np.full((4, 2), 0.5), classes=["p", "q"],
                        request_ids=["1", "2", "3", "4"])
    back = decode(encode(batch))
    assert back.columns["a"].dtype == np.float32 and back.columns["a"].tolist() == [0, 1, 2, 3]
    assert back.columns["c"].tolist() == ["x", "y", "z", "w"] and back.predictions.tolist() == ["p", "q", "p", "q"]
    assert back.scores.shape == (4, 2) and (back.request_ids, back.batch_id, back.timestamp) == (
        batch.request_ids, batch.batch_id, batch.timestamp)
    with pytest.raises(ValueError, match="raw batch|bad magic"):
        decode(b"\x00garbage")


def test_label_business_fields_are_validated() -> None:
    records = parse_label_records(b'[{"request_id": "a", "label": 1, "outcome": true, "value": 12.5},'
                                  b' {"request_id": "b", "label": "x"}]')
    assert (records[0].outcome, records[0].value, records[1].outcome, records[1].value) == (True, 12.5, None, None)
    for bad, field in ((b'[{"request_id": "a", "label": 1, "outcome": "yes"}]', "outcome"),
                       (b'[{"request_id": "a", "label": 1, "value": "12"}]', "value"),
                       (b'[{"request_id": "a", "label": 1, "value": true}]', "value")):
        with pytest.raises(WireError, match=field) as err:
            parse_label_records(bad)
        assert err.value.status == 400


def test_kpis_per_window_and_champion_vs_previous(tmp_path: Path) -> None:
    from monitor.kpi import champion_vs_previous, version_kpis, window_kpis
    from monitor.store import Store

    store = Store(tmp_path / "monitor.db")
    rng = np.random.default_rng(5)
    rows = []
    for version in ("1", "2"):
        for w in (0, 60):
            for i in range(40):
                rid = f"{version}-{w}-{i}"
                outcome, value = bool(rng.random() < (0.3 if version == "1" else 0.5)), float(rng.integers(1, 100))
                rows.append((rid, version, w, outcome, value))
    with store.transaction() as conn:
        conn.executemany("INSERT INTO labelled VALUES (?, 'm', ?, ?, 0, '1', NULL, '1', 0)", [(r[0], r[1], r[2]) for r in rows])
        conn.executemany("INSERT INTO label_business VALUES (?, ?, ?, 0)", [(r[0], int(r[3]), r[4]) for r in rows])
    frame = pd.DataFrame(rows, columns=["rid", "version", "window", "outcome", "value"])
    windows = window_kpis(store, "m", "2")
    truth = frame[frame.version == "2"].groupby("window")
    assert [w["window_start"] for w in windows] == [0, 60]
    assert [w["labels"] for w in windows] == [40, 40]
    assert np.allclose([w["outcome_rate"] for w in windows], truth["outcome"].mean())
    assert np.allclose([w["value_sum"] for w in windows], truth["value"].sum())
    cmp_ = champion_vs_previous(store, "m", ["1", "2"], champion="2")
    v1, v2 = version_kpis(store, "m", "1"), version_kpis(store, "m", "2")
    assert (cmp_["champion"], cmp_["previous"]) == ("2", "1")
    assert math.isclose(cmp_["outcome_rate_diff"], v2["outcome_rate"] - v1["outcome_rate"])
    assert math.isclose(cmp_["value_mean_diff"], frame[frame.version == "2"].value.mean() - frame[frame.version == "1"].value.mean())
    store.close()
