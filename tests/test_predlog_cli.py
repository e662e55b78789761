"""`vigil log export` gives exactly what `vigil train --csv` takes; `vigil log query|stats` answer."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from vigil import config
from cli.main import main
from vigil.predlog.writer import RowLog, append_labels
from vigil.served_batch import ServedBatch


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    monkeypatch.delenv("VIGIL_PREDICTION_LOG", raising=False)
    config.apply_to_process(config.load())
    return tmp_path


def test_export_trains_a_model_and_stats_and_query_answer(home: Path, capsys) -> None:
    from sklearn.datasets import load_iris

    assert main(["train", "--dataset", "iris", "--estimator", "logreg"]) == 0  # registers iris v1 (vigil.target tag)
    from lifecycle.datasets import load_dataset

    X, y, _ = load_dataset("iris")
    now = time.time()
    log = RowLog(home / "predictions", flush_seconds=60)
    ids = [f"r{i}" for i in range(len(X))]
    old = ServedBatch("iris", "1", {c: X[c].to_numpy()[:1] for c in X}, np.array([0]), request_ids=["old-0"],
                      timestamp=now - 10 * 86400)
    log.append(old)  # outside --since 7d
    for start in range(0, len(X), 30):
        part = slice(start, start + 30)
        log.append(ServedBatch("iris", "1", {c: X[c].to_numpy()[part] for c in X}, y.to_numpy()[part],
                               request_ids=ids[part], batch_id=str(start), timestamp=now))
    log.flush()
    labelled = ids[::2]  # half the rows get a label
    append_labels(home / "predictions", [{"request_id": r, "label": int(y.iloc[i])} for i, r in enumerate(ids) if r in set(labelled)]
                  + [{"request_id": "old-0", "label": 0}])
    capsys.readouterr()

    out = home / "recent.csv"
    assert main(["log", "export", "iris", "--since", "7d", "--labelled", "--out", str(out)]) == 0
    frame = pd.read_csv(out)
    assert list(frame.columns) == list(X.columns) + ["target"]  # features + the vigil.target tag's name
    assert len(frame) == len(labelled)
    expected = X.iloc[::2].assign(target=y.iloc[::2].to_numpy())
    key = list(X.columns)
    merged = frame.round(6).merge(expected.round(6), on=key, suffixes=("", "_true"))
    assert len(merged) >= len(labelled) and (merged["target"] == merged["target_true"]).all()  # labels on the right rows
    assert main(["train", "--csv", str(out), "--target", "target", "--name", "iris_from_log", "--estimator", "logreg"]) == 0
    assert "iris_from_log" in capsys.readouterr().out

    assert main(["log", "stats", "iris"]) == 0
    stats = capsys.readouterr().out
    assert f"iris: {len(X) + 1} rows logged, {len(labelled) + 1} labelled" in stats and "v1:" in stats
    assert main(["log", "query", "SELECT COUNT(*) AS n FROM predictions WHERE label IS NULL", "--format", "csv"]) == 0
    assert capsys.readouterr().out.split() == ["n", str(len(X) - len(labelled))]
    assert main(["log", "query", "SELECT nope FROM nowhere"]) == 2
    assert "query failed" in capsys.readouterr().err
    assert main(["log", "export", "iris", "--out", str(home / "x.txt")]) == 2
