"""Agrawal's concept change (river) fed through the real monitor: ADWIN fires after it,
the unchanged inputs raise no dataset drift, and windowed accuracy equals sklearn's."""

from __future__ import annotations

import numpy as np
import orjson
import pandas as pd
import pytest
import requests
from sklearn.metrics import accuracy_score
from sklearn.tree import DecisionTreeClassifier

from monitor.reference import install_reference
from test_monitor_stream import T0, WINDOW, Agent, _stream, monitor, settings  # noqa: F401  (fixtures)

pytestmark = pytest.mark.integration
ROWS, CHANGE, PER_WINDOW = 3072, 1536, 512


def _agrawal(n: int, seed: int, function: int = 0, change_to: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    from river.datasets import synth

    stream = synth.Agrawal(classification_function=function, seed=seed)
    if change_to is not None:
        stream = synth.ConceptDriftStream(stream, synth.Agrawal(classification_function=change_to, seed=seed + 1),
                                          position=CHANGE, width=20, seed=seed + 2)
    xs, ys = zip(*stream.take(n))
    return pd.DataFrame([dict(x) for x in xs]).astype(float), np.array(ys, dtype=int)


def test_agrawal_function_change_fires_adwin_and_no_data_drift(settings, monitor) -> None:  # noqa: F811
    X_ref, y_ref = _agrawal(4000, seed=11)
    model = DecisionTreeClassifier(max_depth=8, random_state=0).fit(X_ref, y_ref)
    ref = X_ref.copy()
    ref["target"], ref["prediction"] = y_ref, model.predict(X_ref)
    proba = model.predict_proba(X_ref)
    ref["proba_0"], ref["proba_1"] = proba[:, 0], proba[:, 1]
    ref.to_parquet(settings.home / "agrawal.parquet")
    install_reference(settings, "agrawal", "1", settings.home / "agrawal.parquet", "classification", "target")
    monitor.start()

    live, labels = _agrawal(ROWS, seed=21, function=0, change_to=2)
    preds = model.predict(live)
    ids = [f"ag-{i}" for i in range(ROWS)]
    streamer = Agent(settings)  # profiles to the monitor, rows to the prediction log
    _stream(streamer, "agrawal", live, preds, model.predict_proba(live), [0, 1], T0, ids=ids, rows_per_window=PER_WINDOW)
    assert streamer.flush(60), streamer.stats()
    streamer.close()
    for i in range(0, ROWS, PER_WINDOW):
        body = [{"request_id": r, "label": int(l)} for r, l in zip(ids[i:i + PER_WINDOW], labels[i:i + PER_WINDOW])]
        joined = requests.post(monitor.url + "/v1/labels", data=orjson.dumps(body), timeout=30).json()["joined"]
        assert joined == len(body)

    drift = monitor.get("/v1/drift", model="agrawal")["versions"][0]
    history = drift["history"]
    assert [h["dataset_drift"] for h in history] == [False] * (ROWS // PER_WINDOW)  # inputs never change
    detections = drift["concept_drift"]
    assert detections, "ADWIN never fired"
    assert all(d["row_index"] > CHANGE for d in detections), detections  # nothing before the change
    first_window = (detections[0]["window_start"] - history[0]["window_start"]) // WINDOW
    assert first_window in (3, 4), detections  # the change starts window 3: caught within two windows
    for k, h in enumerate(history):
        rows = slice(k * PER_WINDOW, (k + 1) * PER_WINDOW)
        assert h["quality"]["labels"] == PER_WINDOW
        assert h["quality"]["accuracy"] == pytest.approx(accuracy_score(labels[rows], preds[rows]))
    print(f"\nAgrawal f0->f2 at row {CHANGE}: ADWIN first fired at row {detections[0]['row_index']} "
          f"(window {first_window}); accuracy per window {[round(h['quality']['accuracy'], 3) for h in history]}")
