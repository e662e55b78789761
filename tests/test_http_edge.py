"""The HTTP edge of a real `bentoml serve` and a real monitor, seen by Python's urllib.

urllib writes the whole body before it reads a byte of the answer: a server that refuses
an oversized body on its Content-Length and closes at once resets that client, which then
never sees the 413. Both servers read and drop a refused body (up to a bound) first.
Request headers over 16 KiB are refused with 431 on every route of both.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request

import pytest
from serving_models import build_iris

from serving.launch import serve_command
from vigil.asgi import LINGER_BYTES, MAX_HEADER_BYTES
from vigil.config import load, process_env, to_env
from vigil.procs import free_port, running
from vigil.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration

BODY_LIMIT = 4096
OVERSIZED = 4 << 20  # far past what socket buffers absorb: without the drain, urllib is reset


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    home = tmp_path_factory.mktemp("edge")
    model = build_iris(home / "iris")
    port, monitor_port = free_port(), free_port()
    settings = load({"VIGIL_HOME": str(home), "VIGIL_MODEL": str(model.folder), "VIGIL_MAX_BODY_BYTES": str(BODY_LIMIT),
                     "VIGIL_MONITOR_MAX_BODY_BYTES": str(BODY_LIMIT), "VIGIL_PROFILE_STREAM": "0",
                     "VIGIL_PREDICTION_LOG": "off", "VIGIL_LIFECYCLE_WORKER": "0"})
    argv, env = serve_command(settings, port=port)
    env["BENTOML_HOME"] = str(home / "bentoml")
    base, monitor = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{monitor_port}"
    monitor_env = process_env(settings) | to_env(settings)
    with running([sys.executable, "-m", "monitor", "--port", str(monitor_port)], monitor_env, f"{monitor}/healthz",
                 log_path=home / "monitor.log", timeout=60), \
            running(argv, env, f"{base}/readyz", log_path=home / "serve.log", timeout=90, cwd=PROJECT_ROOT):
        yield base, monitor, model


def _urlopen(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_urllib_reads_the_413_of_an_oversized_body(servers) -> None:
    base, monitor, model = servers
    assert OVERSIZED <= LINGER_BYTES
    body = b'{"instances": [' + b" " * OVERSIZED + b"]}"
    status, answer = _urlopen(f"{base}/predict", body)
    assert status == 413 and json.loads(answer)["error"]["reason"] == "body_too_large", answer[:200]
    status, answer = _urlopen(f"{monitor}/v1/profiles", body)
    assert status == 413 and "exceeds the 4096-byte limit" in json.loads(answer)["error"], answer[:200]
    # Both keep serving.
    status, answer = _urlopen(f"{base}/predict", json.dumps({"instances": model.rows}).encode())
    assert status == 200 and json.loads(answer)["predictions"] == model.labels
    assert _urlopen(f"{monitor}/healthz")[0] == 200


@pytest.mark.parametrize("path", ["/predict", "/metadata", "/readyz", "/v2/models/iris"])
def test_headers_over_16_kib_get_431_on_the_service(servers, path: str) -> None:
    base, _, model = servers
    body = json.dumps({"instances": model.rows}).encode() if path == "/predict" else None
    status, answer = _urlopen(f"{base}{path}", body, {"X-Padding": "p" * (MAX_HEADER_BYTES + 1)})
    assert status == 431, (status, answer[:200])
    assert json.loads(answer)["error"]["reason"] == "headers_too_large"
    ok, _ = _urlopen(f"{base}{path}", body, {"X-Padding": "p" * (MAX_HEADER_BYTES - 1024)})
    assert ok == 200


@pytest.mark.parametrize("path", ["/healthz", "/v1/status", "/metrics"])
def test_headers_over_16_kib_get_431_on_the_monitor(servers, path: str) -> None:
    _, monitor, _ = servers
    status, answer = _urlopen(f"{monitor}{path}", None, {"X-Padding": "p" * (MAX_HEADER_BYTES + 1)})
    assert status == 431 and "exceed the 16384-byte limit" in json.loads(answer)["error"], (status, answer[:200])
    assert _urlopen(f"{monitor}{path}", None, {"X-Padding": "p" * (MAX_HEADER_BYTES - 1024)})[0] == 200
    assert "headers_too_large" in _urlopen(f"{monitor}/metrics")[1].decode()
