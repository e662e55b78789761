"""Bento export: from a registered model to an archive that serves with MLflow unreachable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
import yaml
from helpers import free_port, running_server
from serving_models import build_iris, register_servable

from vigil import artifacts
from vigil.config import load, process_env
from vigil.serving.launch import PROJECT_ROOT
from vigil.serving.source import SourceError, locate

pytestmark = pytest.mark.integration


def _bentoml(args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("bentoml")), *args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_export_then_serve_bento_without_mlflow(tmp_path):
    home = tmp_path / "home"
    settings = load({"VIGIL_HOME": str(home)})
    model = build_iris(tmp_path / "src")
    version = register_servable(settings, model.folder, "iris")

    # Export in a child process: BentoML binds its home directory once per process.
    env = process_env(settings)
    env["BENTOML_HOME"] = str(settings.bentoml_home)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from vigil.config import load
        from vigil.registry import ModelRef
        from vigil.serving.bento import export_bento
        print(export_bento(load(), ModelRef.parse("models:/iris@champion"), Path({str(tmp_path / "out")!r})))
    """)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=PROJECT_ROOT, capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    archive = Path(done.stdout.strip().splitlines()[-1])
    assert archive == tmp_path / "out" / f"iris-{version}.bento" and archive.stat().st_size > 0

    # A fresh BentoML home, as on another machine: import the archive and serve it.
    serve_env = process_env(settings)
    serve_env |= {
        "BENTOML_HOME": str(tmp_path / "elsewhere"),
        "VIGIL_HOME": str(tmp_path / "elsewhere-vigil"),
        "VIGIL_TRACKING_URI": "http://127.0.0.1:9",  # nothing listens there
        "MLFLOW_TRACKING_URI": "http://127.0.0.1:9",
        "VIGIL_MODEL": "models:/iris@champion",
    }
    _bentoml(["import", str(archive)], serve_env, tmp_path)
    # The store holds one folder per bento version plus a `latest` pointer file.
    bento_dir = next(p for p in (tmp_path / "elsewhere" / "bentos" / "vigil-iris").iterdir() if p.is_dir())
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert info["service"] == "service:Vigil"
    assert info["labels"]["registry_name"] == "iris" and info["labels"]["registry_version"] == version
    assert info["services"][0]["models"][0]["tag"].startswith("vigil-iris:")

    # `bentoml containerize` needs Docker; check the generated Dockerfile instead.
    dockerfile = (bento_dir / "env" / "docker" / "Dockerfile").read_text()
    assert 'ENTRYPOINT [ "/home/bentoml/bento/env/docker/entrypoint.sh" ]' in dockerfile
    assert "ENV VIGIL_HOST=" in dockerfile
    assert "bentoml serve" in (bento_dir / "env" / "docker" / "entrypoint.sh").read_text()
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime==1.32.0" in requirements

    port = free_port()
    argv = [str(Path(sys.executable).with_name("bentoml")), "serve", "vigil-iris:latest", "--port", str(port),
            "--host", "127.0.0.1"]
    base = f"http://127.0.0.1:{port}"
    with running_server(argv, serve_env, f"{base}/readyz", timeout=90, cwd=tmp_path):
        answer = requests.post(f"{base}/predict", json={"instances": model.rows}, timeout=5).json()
        meta = requests.get(f"{base}/metadata", timeout=5).json()
    assert answer["predictions"] == model.labels
    assert meta["model"]["source"] == "bento"


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
