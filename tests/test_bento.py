"""Bento export: from a registered model to an archive that serves from a clean environment.

The clean-venv test stands in for `bentoml containerize` + `docker run`, which need a
Docker engine (loadtest/bento_env.py says how).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
import yaml
from loadtest.bento_env import import_bento
from helpers import free_port, running_server, wait_for
from serving_models import build_iris, register_servable
from sklearn.datasets import load_iris

from vigil import artifacts
from vigil.config import load, process_env
from vigil.paths import PROJECT_ROOT
from serving.source import SourceError, locate

pytestmark = pytest.mark.integration


def _vigil(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([str(Path(sys.executable).with_name("vigil")), *args], env=env, cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def _registered_predictions(settings, rows: list[list[float]]) -> tuple[list[int], np.ndarray]:
    """What the registered sklearn model itself answers: the bento must answer the same."""
    import mlflow.sklearn

    from vigil.registry import connect

    connect(settings)  # this test's registry, whatever an earlier test pointed MLflow at
    model = mlflow.sklearn.load_model("models:/iris/1")
    frame = pd.DataFrame(rows, columns=list(model.feature_names_in_))
    return model.predict(frame).tolist(), model.predict_proba(frame)


def test_exported_bento_serves_from_a_clean_environment(tmp_path):
    """Train, convert, export through the CLI; serve the archive as `bentoml containerize`'s image would."""
    settings = load({"VIGIL_HOME": str(tmp_path / "build")})
    env = process_env(settings) | {"BENTOML_HOME": str(tmp_path / "build-bentoml")}
    _vigil(["train", "--dataset", "iris"], env)
    _vigil(["convert", "iris", "--version", "1"], env)
    out = _vigil(["export", "iris", "--version", "1", "--out", str(tmp_path / "out")], env)
    archive = Path(out.strip().splitlines()[-1].split(": ", 1)[1])
    assert archive == tmp_path / "out" / "iris-1.bento"

    bento = import_bento(archive, tmp_path / "elsewhere" / "bentoml")
    bento_dir = tmp_path / "elsewhere" / "bentoml" / "bentos" / Path(bento.tag.replace(":", "/"))
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert info["service"] == "service:Vigil"
    assert info["labels"]["registry_name"] == "iris" and info["labels"]["registry_version"] == "1"
    assert info["services"][0]["models"][0]["tag"].startswith("vigil-iris:")
    # `bentoml containerize` needs a Docker engine; check what it would build from.
    dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
    assert 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]' in dockerfile
    assert "ENV VIGIL_HOST=" in dockerfile
    assert "bentoml serve" in (bento_dir / "env" / "docker" / "entrypoint.sh").read_text()
    assert "onnxruntime==1.32.0" in (bento_dir / "env" / "python" / "requirements.txt").read_text()
    # The clean venv really is clean: no Vigil checkout, no editable install.
    probe = subprocess.run([str(bento.bin / "python"), "-c", "import vigil"], env=bento.env(), cwd=tmp_path,
                           capture_output=True, text=True)
    assert probe.returncode != 0 and "No module named 'vigil'" in probe.stderr

    monitor_port, port, grpc_port = free_port(), free_port(), free_port()
    monitor_url = f"http://127.0.0.1:{monitor_port}"
    # The monitor reads the version's reference from the registry the model was trained in.
    monitor_env = process_env(settings) | {"VIGIL_MONITOR_WINDOW_SECONDS": "2"}
    serve_env = bento.env(
        VIGIL_HOME=str(tmp_path / "elsewhere" / "vigil"), VIGIL_GRPC_PORT=str(grpc_port),
        VIGIL_MONITOR_URL=monitor_url, VIGIL_MONITOR_WINDOW_SECONDS="2",
        # MLflow out of reach: the bento serves the model packed into it.
        VIGIL_TRACKING_URI="http://127.0.0.1:9", MLFLOW_TRACKING_URI="http://127.0.0.1:9",
    )
    rows = load_iris().data[::10].tolist()
    labels, probabilities = _registered_predictions(settings, rows)
    base = f"http://127.0.0.1:{port}"
    with running_server([sys.executable, "-m", "monitor", "--port", str(monitor_port)], monitor_env,
                        f"{monitor_url}/healthz", timeout=60, log_path=tmp_path / "monitor.log"), \
         running_server(bento.serve_argv(port), serve_env, f"{base}/readyz", timeout=120,
                        cwd=tmp_path / "elsewhere", log_path=tmp_path / "bento.log"):
        answer = requests.post(f"{base}/predict", json={"instances": rows}, timeout=5).json()
        meta = requests.get(f"{base}/metadata", timeout=5).json()
        with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as client:
            tensor = grpcclient.InferInput("X", [len(rows), 4], "FP64")
            tensor.set_data_from_numpy(np.asarray(rows, dtype=np.float64))
            grpc_labels = client.infer("iris", [tensor]).as_numpy("label").tolist()
        served = 2 * len(rows)
        wait_for(lambda: _rows_ingested(monitor_url) == served, 30, f"the monitor ingesting all {served} rows")
    assert answer["predictions"] == labels and grpc_labels == labels
    np.testing.assert_allclose(answer["probabilities"], probabilities, atol=1e-6)
    assert answer["model"] == {"name": "iris", "version": "1"} and meta["model"]["source"] == "bento"


def _rows_ingested(monitor_url: str) -> int:
    status = requests.get(f"{monitor_url}/v1/status", timeout=5).json()
    return sum(v["rows_ingested"] for v in status["versions"] if v["model"] == "iris")


def test_unservable_version_is_refused_with_reason(tmp_path):
    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_MODEL": "models:/broken/1"})
    model = build_iris(tmp_path / "src")
    register_servable(settings, model.folder, "broken", alias=None)
    from vigil.registry import connect

    client = connect(settings)
    client.set_model_version_tag("broken", "1", artifacts.TAG_SERVABLE, "false")
    client.set_model_version_tag("broken", "1", artifacts.TAG_SERVABLE_REASON, "parity failed")
    with pytest.raises(SourceError, match="broken version 1 is not servable: parity failed"):
        locate(settings)
    # a servable version downloads once into the cache, then is reused
    client.set_model_version_tag("broken", "1", artifacts.TAG_SERVABLE, "true")
    first = locate(settings)
    assert first.path == settings.model_cache / "broken" / "1" and first.version == "1"
    assert (first.path / artifacts.ONNX_FILE).is_file()
    assert locate(settings).path == first.path
