"""`vigil drift` gives the running monitor's verdict on the same rows; the verdict's weighting rules."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from cli.main import main
from monitor.compare import DriftPolicy, compare_window
from monitor.offline import compare_files, load_reference, reference_from_frame
from monitor.reference import install_reference
from test_monitor_stream import T0, WINDOW, Agent, _stream, monitor, settings  # noqa: F401  (fixtures)
from vigil import profile_builder as pb

PER_WINDOW = 512


def _data(n: int, seed: int, shift: float = 0.0, tilt: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "income": rng.normal(50 + shift * 10, 10, n),
        "age": rng.normal(40, 12, n),
        "noise": rng.normal(0 + shift, 1, n),
        "region": rng.choice(["north", "south", "east"], n, p=[0.5 - tilt, 0.3, 0.2 + tilt]),
    })
    return frame


def _model(frame: pd.DataFrame) -> tuple[RandomForestClassifier, np.ndarray]:
    y = ((frame.income + (frame.region == "south") * 8 + frame.age * 0.2) > 60).astype(int).to_numpy()
    X = pd.get_dummies(frame, columns=["region"]).astype(float)
    return RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y), y


def _predict(model, frame: pd.DataFrame) -> np.ndarray:
    X = pd.get_dummies(frame, columns=["region"]).astype(float)
    return model.predict(X.reindex(columns=model.feature_names_in_, fill_value=0.0))


@pytest.mark.integration
def test_offline_verdict_equals_the_running_monitors_on_the_same_rows(settings, monitor, tmp_path) -> None:  # noqa: F811
    base = _data(3000, seed=1)
    model, y = _model(base)
    ref = base.copy()
    ref["target"], ref["prediction"] = y, _predict(model, base)
    ref.to_parquet(tmp_path / "ref.parquet")
    install_reference(settings, "loans", "1", tmp_path / "ref.parquet", "classification", "target")
    monitor.start()

    windows = [_data(PER_WINDOW, 2), _data(PER_WINDOW, 3, shift=0.35), _data(PER_WINDOW, 4, shift=1.0, tilt=0.25)]
    live = pd.concat(windows, ignore_index=True)
    preds = _predict(model, live)
    agent = Agent(settings)
    columns = live.copy()
    columns["region"] = columns["region"].astype(object)
    _stream(agent, "loans", columns, preds, None, [], T0, rows_per_window=PER_WINDOW)
    assert agent.flush(60), agent.stats()
    agent.close()
    entry = monitor.get("/v1/drift", model="loans", limit=10)["versions"][0]
    history, latest = entry["history"], entry["latest"]
    assert len(history) == 3

    files = []
    for i, w in enumerate(windows):
        path = tmp_path / f"w{i}.csv"
        w.assign(prediction=preds[i * PER_WINDOW:(i + 1) * PER_WINDOW]).to_csv(path, index=False)
        files.append(path)
    reference = reference_from_frame(pd.read_parquet(tmp_path / "ref.parquet"))
    offline = compare_files(reference, files, DriftPolicy.from_settings(settings))
    assert [v.result["severity"] for v in offline] == [h["severity"] for h in history]
    assert [v.result["dataset_drift"] for v in offline] == [h["dataset_drift"] for h in history]
    assert offline[0].result["severity"] == "none" and offline[-1].result["severity"] == "major"
    ours = offline[-1].result
    assert list(ours["features"]) == list(latest["features"])  # same order: severity, then weighted effect
    for name, f in latest["features"].items():
        mine = ours["features"][name]
        assert (mine["severity"], mine["method"], mine["rows"]) == (f["severity"], f["method"], f["rows"]), name
        # the reference (3,000 rows) is a KLL in estimation mode, whose compaction is randomized:
        # each process's reference sketch differs within the sketch's error
        assert mine["statistic"] == pytest.approx(f["statistic"], rel=0.02, abs=0.01), name
        assert mine["effect_size"] == pytest.approx(f["effect_size"], rel=0.05, abs=0.01), name
    assert ours["prediction_drift"]["severity"] == latest["prediction_drift"]["severity"]
    assert ours["data_quality"] == latest["data_quality"]
    # the dashboard's gauges: severity per feature and for the dataset (latest window: major)
    import requests

    text = requests.get(monitor.url + "/metrics", timeout=30).text
    assert 'vigil_monitor_drift_severity{model="loans",version="1"} 2.0' in text
    majors = [n for n, f in latest["features"].items() if f["severity"] == "major"]
    assert majors and all(f'feature="{n}"' in line and line.endswith(" 2.0") for n in majors for line in
                          [next(x for x in text.splitlines() if x.startswith("vigil_monitor_feature_drift_severity{")
                                and f'feature="{n}"' in x)])


def test_vigil_drift_json_is_one_object_per_file_in_order(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    _data(2000, 1).to_parquet(tmp_path / "ref.parquet")
    _data(500, 2).to_csv(tmp_path / "same.csv", index=False)
    _data(500, 3, shift=1.0, tilt=0.25).to_parquet(tmp_path / "moved.parquet")
    argv = ["drift", "--reference", str(tmp_path / "ref.parquet"), "--json", "--report", str(tmp_path / "r.html"),
            str(tmp_path / "same.csv"), str(tmp_path / "moved.parquet")]
    assert main(argv) == 1  # major drift in one file
    lines = capsys.readouterr().out.strip().splitlines()
    same, moved = (json.loads(line) for line in lines)
    assert same["file"].endswith("same.csv") and moved["file"].endswith("moved.parquet")
    for out in (same, moved):
        assert {"dataset_drift", "drift_share", "features", "compute_ms", "severity"} <= set(out)
        assert out["compute_ms"] > 0
        for f in out["features"].values():
            assert {"drift", "severity", "method", "statistic", "p_value", "effect_size"} <= set(f)
    assert (same["dataset_drift"], same["severity"]) == (False, "none")
    assert moved["dataset_drift"] is True and moved["features"]["income"]["severity"] == "major"
    assert moved["features"]["region"]["method"] == "chi2" and moved["features"]["income"]["method"] == "ks"
    page = (tmp_path / "r.html").read_text()
    assert page.index("moved.parquet") < page.index("same.csv")  # the drifted file first
    assert "MAJOR drift" in page and "<table>" in page and "{'" not in page  # tables, not Python dicts
    assert "PSI ≥ 0.1 (minor) / 0.25 (major)" in page


def test_vigil_drift_names_the_problem_on_bad_input(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    _data(300, 1).to_csv(tmp_path / "ref.csv", index=False)
    _data(300, 2).drop(columns=["age"]).to_csv(tmp_path / "cur.csv", index=False)
    assert main(["drift", "--reference", str(tmp_path / "ref.csv"), str(tmp_path / "cur.csv")]) == 2
    assert "age" in capsys.readouterr().err
    assert main(["drift", "--reference", str(tmp_path / "nope.csv"), str(tmp_path / "cur.csv")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_reference_from_the_registry_carries_its_importance(tmp_path) -> None:
    from vigil import artifacts
    from vigil.config import load
    from vigil.registry import connect, ensure_experiment

    settings = load({"VIGIL_HOME": str(tmp_path)})
    client = connect(settings)
    run = client.create_run(ensure_experiment(client, settings))
    frame = _data(400, 5).assign(target=0, prediction="0")
    frame.to_parquet(tmp_path / "reference.parquet")
    client.log_artifact(run.info.run_id, str(tmp_path / "reference.parquet"), "vigil")
    (tmp_path / "importance.json").write_text(json.dumps({"importance": {"income": 0.3, "age": 0.1, "noise": -0.01}}))
    client.log_artifact(run.info.run_id, str(tmp_path / "importance.json"), "vigil")
    client.create_registered_model("loans")
    mv = client.create_model_version("loans", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_model_version_tag("loans", mv.version, artifacts.TAG_TARGET, "target")
    ref = load_reference(f"models:/loans/{mv.version}", settings)
    assert ref.importance == {"income": 0.3, "age": 0.1, "noise": -0.01}
    assert ref.categorical == ["region"]


def test_drift_on_a_feature_the_model_ignores_is_not_major() -> None:
    ref, cur = _data(3000, 1), _data(500, 2)
    cur["noise"] = cur["noise"] + 3.0  # a big move, on a feature with no importance
    view = lambda f: pb.build_view({c: f[c].to_numpy(dtype=object if c == "region" else float) for c in f})  # noqa: E731
    features = ["income", "age", "noise", "region"]
    importance = {"income": 0.5, "age": 0.2, "noise": 0.0, "region": 0.1}
    weighted = compare_window(view(ref), view(cur), features, {"region"}, importance=importance,
                              policy=DriftPolicy(share=0.25))
    equal = compare_window(view(ref), view(cur), features, {"region"}, policy=DriftPolicy(share=0.25))
    assert weighted.features[0].column == "noise" and weighted.features[0].severity == "major"
    assert weighted.severity == "minor" and weighted.drift_share == 0.0 and not weighted.dataset_drift
    assert equal.severity == "major" and equal.drift_share == pytest.approx(0.25)  # unweighted, 1 of 4 features


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium comes with .ci/system-deps")
def test_the_report_renders_in_headless_chromium(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    _data(2000, 1).to_parquet(tmp_path / "ref.parquet")
    _data(500, 3, shift=1.0).to_csv(tmp_path / "moved.csv", index=False)
    main(["drift", "--reference", str(tmp_path / "ref.parquet"), "--report", str(tmp_path / "r.html"),
          str(tmp_path / "moved.csv")])
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1600",
                    f"--screenshot={shot}", (tmp_path / "r.html").as_uri()], capture_output=True, timeout=120, check=True)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (1600, 1200)
    # the red "major" banner and table rows are drawn: many pixels of the major colour #f8c9c4
    major = np.all(np.abs(pixels[..., :3] - np.array([0xF8, 0xC9, 0xC4]) / 255) < 0.02, axis=-1)
    assert major.mean() > 0.01
