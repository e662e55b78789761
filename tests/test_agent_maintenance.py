"""The agent's log maintenance runs beside its main loop: a slow merge never stops the queue."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from serving.producer import agent_process
from vigil.config import load
from vigil.predlog import files, query
from vigil.served_batch import ServedBatch


def _batch(i: int) -> ServedBatch:
    return ServedBatch("iris", "1", {"a": np.arange(4, dtype=np.float64) + i}, np.zeros(4, dtype=np.int64),
                       request_ids=[f"m{i}-{j}" for j in range(4)], batch_id=f"m{i}", timestamp=1_800_000_000.0 + i)


def test_a_slow_compaction_runs_in_its_own_thread_while_batches_are_logged(tmp_path: Path, monkeypatch) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_PROFILE_STREAM": "0",
                     "VIGIL_PREDICTION_LOG_FLUSH_SECONDS": "0.05"})
    started, release, ran_in = threading.Event(), threading.Event(), []

    def slow_maintain(root: Path, kind: str, retention_days: int) -> files.Maintenance:
        ran_in.append(threading.current_thread().name)
        started.set()
        release.wait(30)  # a merge that takes its time
        return files.Maintenance()

    monkeypatch.setattr(files, "maintain", slow_maintain)
    monkeypatch.setattr(agent_process, "_FIRST_MAINTENANCE_S", 0.01)
    agent = agent_process.Agent(settings)
    try:
        assert started.wait(10), "maintenance never ran"
        for i in range(3):  # the main loop's work, while the merge is still under way
            agent.handle(_batch(i))
        time.sleep(0.06)
        agent.tick()  # the flush is due: it writes, and returns without waiting for the merge
        assert not release.is_set()
        frame, _ = query.query(settings.prediction_log_dir, "SELECT COUNT(*) AS n FROM served")
        assert frame["n"][0] == 12
        assert ran_in == ["vigil-log-maintenance"]
    finally:
        release.set()
        agent.close(timeout=5)
    assert agent._maintenance is not None and not agent._maintenance.is_alive()
