"""Served predictions equal scikit-learn's own, for every estimator the converter supports.

Independent of the converter's parity report: each model is trained on a bundled (or
generated) dataset, converted, written as the serving folder the registry would hold,
loaded by the serving runtime every transport uses (validation -> batcher -> ONNX
Runtime), and asked for the holdout rows as a JSON request. The answer is compared with
the sklearn model's `predict` / `predict_proba` on those rows, within the converter's
stated tolerance (converter/parity.py: ATOL, and RTOL for regression values). Labels
must be identical except on a row whose top two sklearn probabilities tie within ATOL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from converter import convert_and_check
from converter.parity import ATOL, RTOL
from estimator_cases import CASES, C, _features
from serving.bundle import load_bundle
from serving.runtime import Runtime
from serving.source import ModelFolder
from serving_models import build_iris
from vigil.config import load

HOLDOUT_ROWS = 40  # enough rows to cover every class, few enough to keep each request small


def _request(X: pd.DataFrame) -> bytes:
    """The holdout rows as /predict instances, one object per row, JSON types as a client sends them."""
    def value(v: Any) -> Any:
        return v.item() if hasattr(v, "item") else v

    return json.dumps({"instances": [{c: value(row[c]) for c in X.columns} for _, row in X.iterrows()]}).encode()


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Runtime, asyncio.AbstractEventLoop]]:
    """One serving runtime on its own event loop thread; each test hot-swaps its model in."""
    home = tmp_path_factory.mktemp("home")
    first = build_iris(home / "first")
    settings = load({"VIGIL_HOME": str(home), "VIGIL_MODEL": str(first.folder), "VIGIL_PROFILE_STREAM": "0",
                     "VIGIL_PREDICTION_LOG": "off"})
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    served = Runtime(settings)
    served.load()
    asyncio.run_coroutine_threadsafe(served.start(), loop).result(60)
    yield served, loop
    asyncio.run_coroutine_threadsafe(served.stop(), loop).result(60)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _serve(runtime: tuple[Runtime, asyncio.AbstractEventLoop], folder: Path, body: bytes) -> dict[str, Any]:
    served, loop = runtime
    served.install(load_bundle(served.settings, ModelFolder(folder, "local")))

    async def ask() -> dict[str, Any]:
        return await served.predict(served.parse(body))  # parse + submit in one step, as the routes do

    answer = asyncio.run_coroutine_threadsafe(ask(), loop).result(60)
    assert answer["model"]["name"] == folder.parent.name  # the swapped-in model answered
    return answer


def _write_folder(folder: Path, converted: Any) -> None:
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(converted.onnx_bytes)
    dataclasses.replace(converted.schema, model_name=folder.parent.name, model_version="1").save(folder / "schema.json")


def _top_two_tie(proba: np.ndarray) -> np.ndarray:
    top = np.sort(proba, axis=1)[:, -2:]
    return (top[:, 1] - top[:, 0]) <= ATOL


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:.*probability:FutureWarning")  # SVC(probability=True), sklearn 1.9
@pytest.mark.parametrize("case", list(CASES))
def test_served_answers_match_sklearn_on_holdout_rows(
    case: str, runtime: tuple[Runtime, asyncio.AbstractEventLoop], tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp_path = tmp_path_factory.mktemp(case)
    load_data, make, task = CASES[case]
    X, y = load_data()
    X_train, X_test, y_train, _ = train_test_split(X, y, test_size=0.3, random_state=0)
    estimator = make().fit(X_train, y_train)
    holdout = X_test.iloc[:HOLDOUT_ROWS]
    converted = convert_and_check(estimator, _features(X), task, X_test)
    _write_folder(tmp_path / "model", converted)

    answer = _serve(runtime, tmp_path / "model", _request(holdout))

    served = np.asarray(answer["predictions"])
    assert len(served) == len(holdout)
    if task != C:
        expected = estimator.predict(holdout).astype(np.float64)
        err = np.abs(served.astype(np.float64) - expected)
        bad = (err > ATOL) & (err > RTOL * np.abs(expected))
        assert not bad.any(), f"{case}: {int(bad.sum())} rows off, worst {err.max():.3g}"
        return
    expected_labels = estimator.predict(holdout)
    expected_proba = estimator.predict_proba(holdout)
    assert answer["classes"] == [c.item() if hasattr(c, "item") else c for c in estimator.classes_]
    proba = np.asarray(answer["probabilities"], dtype=np.float64)
    assert proba.shape == expected_proba.shape
    worst = float(np.abs(proba - expected_proba).max())
    assert worst <= ATOL, f"{case}: probabilities differ by up to {worst:.3g} (> {ATOL})"
    differ = np.asarray([str(a) != str(b) for a, b in zip(served, expected_labels)])
    assert not (differ & ~_top_two_tie(expected_proba)).any(), (
        f"{case}: served labels {served[differ][:5]} vs sklearn {expected_labels[differ][:5]}")
    assert all(math.isclose(sum(p), 1.0, abs_tol=1e-4) for p in answer["probabilities"])
