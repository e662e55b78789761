"""The spine end to end with real parts: `vigil train` → `vigil convert` → `bentoml serve`
from the SQLite registry → predictions equal the sklearn model's own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from lifecycle import make_mixed_demo_frame
from vigil import config
from vigil.procs import free_port, running
from serving.launch import serve_command

pytestmark = pytest.mark.integration


def vigil(home: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the `vigil` console script as a user would."""
    env = {**os.environ, "VIGIL_HOME": str(home)}
    env.pop("VIGIL_TRACKING_URI", None)
    exe = Path(sys.executable).with_name("vigil")
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True, timeout=300)


def sklearn_model(home: Path, uri: str):
    settings = config.load({"VIGIL_HOME": str(home)})
    from vigil.registry import connect

    connect(settings)
    import mlflow.sklearn

    return mlflow.sklearn.load_model(uri)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vigil-home")


@pytest.fixture(scope="module")
def iris_server(home: Path):
    trained = vigil(home, "train", "--dataset", "iris")
    assert trained.returncode == 0, trained.stderr
    assert "registered iris version 1" in trained.stdout
    converted = vigil(home, "convert", "iris", "--version", "1", "--quiet")
    assert converted.returncode == 0, converted.stderr
    # The whole line, so "parity failed" (or a parity on other rows) cannot pass for it.
    line = re.fullmatch(r"models:/iris/1 \(LogisticRegression pipeline\) -> ONNX opset (\d+), (float32|float64) input; "
                        r"parity passed on 30 rows, max abs err (\S+); \S+/vigil/onnx in [\d.]+s\n", converted.stdout)
    assert line is not None, converted.stdout
    assert float(line.group(3)) <= 1e-5

    settings = config.load({"VIGIL_HOME": str(home), "VIGIL_MODEL": "models:/iris/1"})
    port = free_port()
    argv, env = serve_command(settings, port=port)
    env["BENTOML_HOME"] = str(home / f"bentoml-{port}")  # one BentoML home per server
    base = f"http://127.0.0.1:{port}"
    with running(argv, env, f"{base}/readyz", log_path=home / "serve-iris.log", timeout=120):
        yield base


def test_served_predictions_equal_sklearns_own(home: Path, iris_server: str) -> None:
    from sklearn.datasets import load_iris

    data = load_iris(as_frame=True)
    frame = data.frame.drop(columns="target")
    model = sklearn_model(home, "models:/iris/1")

    answer = requests.post(f"{iris_server}/predict", json={"instances": frame.values.tolist()}, timeout=10).json()
    assert answer["model"] == {"name": "iris", "version": "1"}
    assert answer["predictions"] == model.predict(frame).tolist()
    np.testing.assert_allclose(answer["probabilities"], model.predict_proba(frame), atol=1e-5)
    assert answer["classes"] == [0, 1, 2]
    assert len(answer["request_ids"]) == len(frame) == len(set(answer["request_ids"]))

    # The same rows as objects by feature name, one request each, concurrently batched.
    from concurrent.futures import ThreadPoolExecutor

    records = frame.head(40).to_dict(orient="records")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda r: requests.post(f"{iris_server}/predict", json={"instances": [r]}, timeout=10).json(), records))
    assert [a["predictions"][0] for a in answers] == model.predict(frame.head(40)).tolist()


def test_bad_input_is_a_4xx_and_the_server_keeps_serving(iris_server: str) -> None:
    bad = requests.post(f"{iris_server}/predict", json={"instances": [[1.0, 2.0]]}, timeout=5)
    assert bad.status_code == 400
    assert "expected 4" in bad.json()["error"]["message"]
    good = requests.post(f"{iris_server}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=5)
    assert good.status_code == 200 and good.json()["predictions"] == [0]


def test_metadata_and_metrics_describe_the_registry_version(iris_server: str) -> None:
    meta = requests.get(f"{iris_server}/metadata", timeout=5).json()
    assert meta["model"]["name"] == "iris" and meta["model"]["version"] == "1"
    assert [f["name"] for f in meta["inputs"]["features"]][0] == "sepal length (cm)"
    assert meta["parity"]["passed"] is True

    before = _predicted_rows(iris_server)
    requests.post(f"{iris_server}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]] * 7}, timeout=5).raise_for_status()
    assert _predicted_rows(iris_server) == before + 7


def _predicted_rows(base: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("vigil_predictions_total{") and 'outcome="ok"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_mixed_type_csv_trains_converts_and_serves(home: Path, tmp_path: Path) -> None:
    frame = make_mixed_demo_frame(n=300, seed=3)
    csv = tmp_path / "orders.csv"
    frame.to_csv(csv, index=False)
    trained = vigil(home, "train", "--csv", str(csv), "--target", "target", "--name", "orders")
    assert trained.returncode == 0, trained.stderr
    converted = vigil(home, "convert", "orders", "--version", "1", "--quiet")
    assert converted.returncode == 0, converted.stderr

    settings = config.load({"VIGIL_HOME": str(home), "VIGIL_MODEL": "models:/orders/1"})
    port = free_port()
    argv, env = serve_command(settings, port=port)
    env["BENTOML_HOME"] = str(home / f"bentoml-{port}")  # one BentoML home per server
    rows = frame.drop(columns="target").head(25)
    with running(argv, env, f"http://127.0.0.1:{port}/readyz", log_path=home / "serve-orders.log", timeout=120):
        answer = requests.post(
            f"http://127.0.0.1:{port}/predict", json={"instances": rows.to_dict(orient="records")}, timeout=10
        ).json()
    model = sklearn_model(home, "models:/orders/1")
    assert answer["predictions"] == model.predict(rows).tolist()
    np.testing.assert_allclose(answer["probabilities"], model.predict_proba(rows), atol=1e-5)


def test_cli_errors_are_one_line_without_traceback(home: Path) -> None:
    missing = vigil(home, "convert", "nope", "--version", "1")
    assert missing.returncode == 2
    assert missing.stderr.startswith("vigil convert: cannot resolve models:/nope/1")
    assert "Traceback" not in missing.stderr

    unservable = vigil(home, "serve", "--model", "models:/nope@champion", "--port", str(free_port()))
    assert unservable.returncode == 2
    assert "Traceback" not in unservable.stderr and "nope" in unservable.stderr

    bad_csv = vigil(home, "train", "--csv", str(home / "missing.csv"), "--target", "y")
    assert bad_csv.returncode == 2 and "Traceback" not in bad_csv.stderr


def test_a_version_that_failed_conversion_is_refused_by_serve(home: Path) -> None:
    settings = config.load({"VIGIL_HOME": str(home)})
    from vigil.registry import connect

    client = connect(settings)
    trained = vigil(home, "train", "--dataset", "wine", "--name", "wine-unservable")
    assert trained.returncode == 0, trained.stderr
    client.set_model_version_tag("wine-unservable", "1", "vigil.servable", "false")
    client.set_model_version_tag("wine-unservable", "1", "vigil.servable_reason", "parity failed in this test")
    refused = vigil(home, "serve", "--model", "models:/wine-unservable/1", "--port", str(free_port()))
    assert refused.returncode == 2
    assert "not servable" in refused.stderr or "parity failed in this test" in refused.stderr, refused.stderr
