"""Monitor internals in-process: whylogs shim, drift math, quality, wire, state, registry."""

from __future__ import annotations

import time

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn import metrics

from monitor import drift as dm
from monitor.quality import classification_quality, regression_quality
from monitor.reference import ReferenceStore, UnknownModel, install_reference
from monitor.state import Monitor
from monitor.wire import LabelRecord, WireError, parse, parse_label_records
from vigil.config import load
from serving.producer.message import batch_message
from vigil.predlog.writer import RowLog
from vigil.served_batch import ServedBatch
from vigil.whylogs_compat import profile

RNG = np.random.default_rng(7)


def test_whylogs_shim_profiles_string_columns() -> None:
    view = profile(pd.DataFrame({"color": ["red", "blue", "red"], "x": [1.0, np.nan, np.inf]}))
    summary = view.get_column("color").to_summary_dict()
    assert summary["types/string"] == 3
    assert {i.value for i in summary["frequent_items/frequent_strings"]} == {"red", "blue"}
    counts = view.get_column("x").to_summary_dict()
    assert (counts["counts/nan"], counts["counts/inf"]) == (1, 1)


def _views(ref: np.ndarray, cur: np.ndarray) -> tuple:
    return profile(pd.DataFrame({"x": ref})), profile(pd.DataFrame({"x": cur}))


def test_numeric_drift_needs_significance_and_effect_size() -> None:
    rng = np.random.default_rng(3)
    ref, same, shifted = rng.normal(size=800), rng.normal(size=300), rng.normal(0.8, 1, size=300)
    stable = dm.numeric_drift(*_views(ref, same), "x", 0.001)
    moved = dm.numeric_drift(*_views(ref, shifted), "x", 0.001)
    assert stable.method == "ks" and stable.severity == "none" and not stable.drift and stable.p_value > 0.001
    assert moved.drift and moved.severity == "major" and moved.p_value < 1e-6 and moved.effect_size > 0.25


def test_numeric_drift_large_windows_significant_but_small_is_none() -> None:
    # A tiny shift on 20k rows is "significant" but harmless: PSI keeps it at none.
    ref, cur = RNG.normal(size=20000), RNG.normal(0.05, 1, size=20000)
    result = dm.numeric_drift(*_views(ref, cur), "x", 0.001)
    assert result.p_value < 0.001 and result.effect_size < 0.1 and result.severity == "none"
    moderate = dm.numeric_drift(*_views(ref, RNG.normal(0.35, 1, size=20000)), "x", 0.001)
    assert moderate.severity == "minor" and 0.1 <= moderate.effect_size < 0.25


def test_categorical_drift_chi_square() -> None:
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 600, p=[0.5, 0.3, 0.2])})
    same = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 300, p=[0.5, 0.3, 0.2])})
    moved = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 300, p=[0.2, 0.3, 0.5])})
    assert not dm.categorical_drift(profile(ref), profile(same), "c", 0.001).drift
    result = dm.categorical_drift(profile(ref), profile(moved), "c", 0.001)
    assert result.drift and result.method == "chi2" and result.effect_size > 0.25 and result.distance > 0.1


def test_quality_matches_sklearn() -> None:
    classes = ["a", "b", "c"]
    y = RNG.choice(classes, 200)
    scores = RNG.dirichlet([1, 1, 1], 200)
    pred = np.array(classes)[scores.argmax(1)]
    q = classification_quality(list(y), list(pred), scores, classes)
    assert q["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    assert q["f1"] == pytest.approx(metrics.f1_score(y, pred, average="macro"))
    assert q["roc_auc"] == pytest.approx(metrics.roc_auc_score(y, scores, multi_class="ovr", labels=classes))
    t, p = RNG.normal(size=50), RNG.normal(size=50)
    r = regression_quality(t, p)
    assert r["rmse"] == pytest.approx(metrics.root_mean_squared_error(t, p))
    assert r["r2"] == pytest.approx(metrics.r2_score(t, p))


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"\x00\xffgarbage", 400, "not JSON"),
        (b'{"v": 3}', 422, "contract version 3"),
        (b'{"v": 1, "batch_id": "x"}', 400, "missing field 'task'"),
        (b'[1, 2]', 400, "JSON object"),
    ],
)
def test_wire_rejects_bad_messages(body: bytes, status: int, needle: str) -> None:
    with pytest.raises(WireError) as err:
        parse(body)
    assert err.value.status == status and needle in str(err.value)


def test_wire_rejects_bad_labels() -> None:
    with pytest.raises(WireError, match="needs 'request_id' and 'label'"):
        parse_label_records(b'[{"id": 1}]')
    assert parse_label_records(b'{"labels": [{"request_id": 5, "label": "x"}]}') == [LabelRecord("5", "x")]


def _reference(tmp_path, settings) -> pd.DataFrame:
    x = RNG.normal(size=(400, 2))
    y = (x[:, 0] > 0).astype(int)
    ref = pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "target": y, "prediction": y, "proba_0": 1.0 - y, "proba_1": y * 1.0})
    ref.to_parquet(tmp_path / "ref.parquet")
    install_reference(settings, "toy", "1", tmp_path / "ref.parquet", "classification", "target")
    return ref


def _batch(ts: float, ids: list[str], shift: float = 0.0) -> ServedBatch:
    x = RNG.normal(size=(len(ids), 2)) + shift
    pred = (x[:, 0] > 0).astype(int)
    return ServedBatch("toy", "1", {"a": x[:, 0], "b": x[:, 1]}, pred, scores=np.c_[1 - pred, pred],
                       classes=[0, 1], request_ids=ids, timestamp=ts)


def _message(ts: float, ids: list[str], shift: float = 0.0) -> bytes:
    return batch_message(_batch(ts, ids, shift), "unit")


def test_monitor_state_is_idempotent_and_survives_restart(tmp_path) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path)})
    _reference(tmp_path, settings)
    mon = Monitor(settings)
    early = mon.post_labels(orjson.dumps([{"request_id": "r0", "label": 1}]))
    assert early == {"joined": 0, "pending": 1, "duplicate": 0, "received": 1}
    served = time.time() // 60 * 60 + 1  # the log keeps recent rows: the join looks back VIGIL_MONITOR_RETENTION_SECONDS
    batch = _batch(served, ["r0", "r1", "r2"])
    body = batch_message(batch, "unit")
    assert mon.ingest(body)["status"] == "ingested"
    assert mon.ingest(body)["status"] == "duplicate"
    assert mon.join_labels() == 0  # its rows are not in the prediction log yet
    log = RowLog(settings.prediction_log_dir)
    log.append(batch)
    log.flush()  # what the service's agent does every few seconds
    assert mon.join_labels() == 1  # the waiting label meets its row
    mon.store.close()
    again = Monitor(settings)  # a restart: everything comes back from SQLite
    status = again.status()
    version = status["versions"][0]
    assert (version["profiles_ingested"], version["rows_ingested"], version["labels_joined"]) == (1, 3, 1)
    assert status["duplicates"] == 1 and status["labels"]["waiting_now"] == 0
    assert again.post_labels(orjson.dumps([{"request_id": "r1", "label": 0}]))["joined"] == 1  # logged: joined at once
    assert again.post_labels(orjson.dumps([{"request_id": "r1", "label": 1}]))["duplicate"] == 1
    report = again.window_report("toy", "1", int(served // 60 * 60))
    assert report["rows"] == 3 and report["quality"]["labels"] == 2


def test_unknown_model_is_a_404(tmp_path) -> None:
    settings = load({"VIGIL_HOME": str(tmp_path)})
    mon = Monitor(settings, references=ReferenceStore(settings))
    mon.references._cache[("toy", "1")] = None  # never consulted: a different name below
    body = _message(1.0, ["x"]).replace(b'"model":"toy"', b'"model":"nope"')
    with pytest.raises(WireError) as err:
        mon.ingest(body)
    assert err.value.status == 404 and "nope" in str(err.value)
    assert mon.rejected["unknown_model"] == 1


def test_reference_comes_from_the_mlflow_registry(tmp_path) -> None:
    from vigil import artifacts
    from vigil.registry import connect, ensure_experiment

    settings = load({"VIGIL_HOME": str(tmp_path)})
    client = connect(settings)
    experiment = ensure_experiment(client, settings)
    run = client.create_run(experiment)
    x = RNG.normal(size=(50, 2))
    frame = pd.DataFrame({"a": x[:, 0], "kind": RNG.choice(["p", "q"], 50), "y": x[:, 1], "prediction": x[:, 1]})
    path = tmp_path / "reference.parquet"
    frame.to_parquet(path)
    client.log_artifact(run.info.run_id, str(path), "vigil")
    client.create_registered_model("reg")
    mv = client.create_model_version("reg", f"runs:/{run.info.run_id}/model", run.info.run_id)
    for key, value in {artifacts.TAG_TASK: "regression", artifacts.TAG_TARGET: "y", "vigil.metric.r2": "0.9"}.items():
        client.set_model_version_tag("reg", mv.version, key, value)
    ref = ReferenceStore(settings).get("reg", mv.version)
    assert (ref.task, ref.target, ref.numeric, ref.categorical) == ("regression", "y", ["a"], ["kind"])
    assert ref.metrics == {"r2": 0.9}
    with pytest.raises(UnknownModel, match="reg/99"):
        ReferenceStore(settings).get("reg", "99")


def test_a_state_file_of_the_v1_monitor_is_migrated_without_loss(tmp_path) -> None:
    """Contract v1 kept every served row; the labelled ones move to `labelled`, totals become columns."""
    import sqlite3

    from monitor.store import Store

    path = tmp_path / "monitor.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE batches (batch_id TEXT PRIMARY KEY, model TEXT, version TEXT, window_start INTEGER,
          rows INTEGER, ts REAL, received_at REAL, producer TEXT);
        CREATE TABLE versions (model TEXT, version TEXT, task TEXT, classes TEXT, adwin BLOB,
          errors_seen INTEGER DEFAULT 0, PRIMARY KEY (model, version));
        CREATE TABLE predictions (request_id TEXT PRIMARY KEY, model TEXT, version TEXT, window_start INTEGER,
          ts REAL, prediction TEXT, scores TEXT, label TEXT, labelled_at REAL);
        INSERT INTO batches VALUES ('b1', 'm', '1', 0, 2, 5.0, 6.0, 'p'), ('b2', 'm', '1', 0, 3, 7.0, 8.0, 'p');
        INSERT INTO versions (model, version, task, classes) VALUES ('m', '1', 'classification', '[0, 1]');
        INSERT INTO predictions VALUES ('a', 'm', '1', 0, 5.0, '1', NULL, '1', 9.0),
                                       ('b', 'm', '1', 0, 5.0, '0', NULL, NULL, NULL);
    """)
    old.commit()
    old.close()
    store = Store(path)
    assert store.query("SELECT request_id, label FROM labelled") == [("a", "1")]
    assert store.query("SELECT profiles, rows, last_ts FROM versions") == [(2, 5, 7.0)]
    assert not store.query("SELECT name FROM sqlite_master WHERE name = 'predictions'")
    store.close()
