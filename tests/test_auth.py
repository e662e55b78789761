"""Access control (issue 7): bearer tokens for the monitor, the service's admin route and predictions.

Unit tests for where tokens come from (env, mounted file) and how they are checked; then one
real monitor (API token from a file) and two real `bentoml serve` processes, started in
parallel: one with a predict token from the environment and the API token from the file,
one with no tokens at all (predictions open).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from helpers import metric as _metric, wait_for as _wait_for
from serving_models import IRIS_FEATURES, build_iris
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from vigil import auth
from vigil.config import load, process_env, replace
from vigil.procs import free_port, stop_process_group, wait_ready
from vigil.paths import PROJECT_ROOT
from serving.errors import Unauthorized
from serving.launch import serve_command
from vigil.config import to_env
from serving.swap.reload import authorize_webhook

API_TOKEN = "api-3f9c2e1d7b"
PREDICT_TOKEN = "predict-8a6d4c"
ROW = {"instances": [[5.1, 3.5, 1.4, 0.2]]}
WEBHOOK_SECRET = "whsec-test"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- where tokens come from ------------------------------------------------------------------


def test_tokens_from_env_or_file_are_stripped_and_the_file_secret_stays_out_of_child_env(tmp_path: Path) -> None:
    secret = tmp_path / "api-token"
    secret.write_text(f"{API_TOKEN}\n\n")  # `echo token > file`, k8s secrets with a newline
    settings = load({"VIGIL_HOME": str(tmp_path), "VIGIL_API_TOKEN_FILE": str(secret),
                     "VIGIL_PREDICT_TOKEN": f"  {PREDICT_TOKEN} \n"})
    assert auth.api_token(settings) == API_TOKEN and auth.predict_token(settings) == PREDICT_TOKEN
    assert auth.auth_headers(settings) == {"authorization": f"Bearer {API_TOKEN}"}
    # The child server gets the file's path, never the secret read from it; repr hides tokens.
    env = to_env(settings)
    assert env["VIGIL_API_TOKEN_FILE"] == str(secret) and "VIGIL_API_TOKEN" not in env
    assert API_TOKEN not in str(env) and API_TOKEN not in repr(settings) and PREDICT_TOKEN not in repr(settings)
    # ...and the child's load() of that environment resolves the same tokens.
    assert auth.api_token(load(env)) == API_TOKEN and auth.predict_token(load(env)) == PREDICT_TOKEN
    none = load({"VIGIL_HOME": str(tmp_path)})
    assert auth.api_token(none) == "" and auth.auth_headers(none) == {} and auth.predict_headers(none) == {}


def test_a_relative_token_file_becomes_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tok").write_text(API_TOKEN)
    monkeypatch.chdir(tmp_path)  # `bentoml serve` runs from the project root, not from here
    assert load({"VIGIL_API_TOKEN_FILE": "tok"}).api_token_file == str(tmp_path / "tok")


@pytest.mark.parametrize("env, words", [
    ({"VIGIL_API_TOKEN": "a", "VIGIL_API_TOKEN_FILE": "{file}"}, "either VIGIL_API_TOKEN or VIGIL_API_TOKEN_FILE"),
    ({"VIGIL_PREDICT_TOKEN_FILE": "{missing}"}, "VIGIL_PREDICT_TOKEN_FILE="),
    ({"VIGIL_API_TOKEN_FILE": "{empty}"}, "the token file is empty"),
    ({"VIGIL_PREDICT_TOKEN": "two words"}, "printable ASCII without spaces"),
    ({"VIGIL_API_TOKEN": "caf\u00e9"}, "printable ASCII"),
])
def test_bad_token_configuration_is_a_clear_error_at_load(tmp_path: Path, env: dict, words: str) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").write_text(" \n")
    paths = {"file": tmp_path / "file", "missing": tmp_path / "nope", "empty": tmp_path / "empty"}
    with pytest.raises(ValueError) as caught:
        load({k: v.format(**paths) for k, v in env.items()})
    assert words in str(caught.value)
    if "missing" in str(env):
        assert "cannot read the token file" in str(caught.value) and "No such file" in str(caught.value)


def test_check_bearer_accepts_only_the_exact_token() -> None:
    token = API_TOKEN.encode()
    assert auth.check_bearer(f"Bearer {API_TOKEN}", token)
    assert auth.check_bearer(f"bearer {API_TOKEN}".encode(), token)  # the scheme ignores case
    for header in (None, "", API_TOKEN, f"Basic {API_TOKEN}", f"Bearer {API_TOKEN}x", f"Bearer {API_TOKEN[:-1]}",
                   "Bearer ", "Bearer caf\u00e9"):
        assert not auth.check_bearer(header, token), header


def _signed(body: bytes, secret: str = WEBHOOK_SECRET) -> dict[str, str]:
    """MLflow 3's webhook signature headers (mlflow/webhooks/delivery.py)."""
    delivery, stamp = "d-1", str(int(time.time()))
    digest = hmac.new(secret.encode(), f"{delivery}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"x-mlflow-signature": "v1," + base64.b64encode(digest).decode(), "x-mlflow-timestamp": stamp,
            "x-mlflow-delivery-id": delivery}


def test_webhook_takes_a_bearer_token_or_an_mlflow_signature() -> None:
    body, token = b'{"entity": "model_version_alias", "action": "created", "data": {}}', API_TOKEN.encode()
    assert authorize_webhook(body, {}, None, WEBHOOK_SECRET) == WEBHOOK_SECRET  # no token: signature as before
    assert authorize_webhook(body, {"authorization": f"Bearer {API_TOKEN}"}, token, WEBHOOK_SECRET) == ""
    assert authorize_webhook(body, _signed(body), token, WEBHOOK_SECRET) == ""
    for headers, secret, words in (({}, "", "missing or invalid bearer token for /v1/webhooks/mlflow"),
                                   ({"authorization": "Bearer nope"}, WEBHOOK_SECRET, "no valid MLflow signature"),
                                   (_signed(body, "other"), WEBHOOK_SECRET, "does not match")):
        with pytest.raises(Unauthorized) as caught:
            authorize_webhook(body, headers, token, secret)
        assert caught.value.reason == "unauthorized" and caught.value.status == 401 and words in caught.value.message


# -- the deployment files carry the token ----------------------------------------------------------


def test_alertmanager_sends_the_api_token_and_kubernetes_mounts_it_as_a_file() -> None:
    deploy = PROJECT_ROOT / "deploy"
    am = yaml.safe_load((deploy / "alertmanager" / "alertmanager.yml").read_text())
    hook = next(r for r in am["receivers"] if r["name"] == "lifecycle-actions")["webhook_configs"][0]
    assert hook["url"].endswith("/v1/actions/alert")
    assert hook["http_config"]["authorization"]["type"] == "Bearer"
    assert hook["http_config"]["authorization"]["credentials_file"]
    for name in ("service.yaml", "monitor.yaml"):
        workload = next(yaml.safe_load_all((deploy / "k8s" / name).read_text()))
        pod = workload["spec"]["template"]["spec"]
        container = pod["containers"][0]
        token_file = next(e["value"] for e in container["env"] if e["name"] == "VIGIL_API_TOKEN_FILE")
        mount = next(m for m in container["volumeMounts"] if token_file.startswith(m["mountPath"] + "/"))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        assert volume["secret"]["secretName"] == "vigil-auth" and mount["readOnly"] is True
    values = yaml.safe_load((deploy / "helm" / "vigil" / "values.yaml").read_text())
    assert values["auth"]["existingSecret"] == ""  # the chart's default stays open; opt in with a Secret


def test_openapi_declares_the_token_on_protected_routes_only() -> None:
    from monitor.openapi import monitor_openapi
    from monitor.server import OPEN_PATHS
    from serving.http.openapi import service_openapi

    spec = monitor_openapi()
    assert spec["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for operation in operations.values():
            assert ("401" in operation["responses"]) == (path not in OPEN_PATHS), path
    service = service_openapi()
    assert service["paths"]["/predict"]["post"]["security"] == [{"predictToken": []}, {}]
    assert "401" in service["paths"]["/v2/models/{name}/infer"]["post"]["responses"]
    assert "security" not in service["paths"]["/metadata"]["get"]


# -- real processes -------------------------------------------------------------------------------




def _iris_reference(path: Path) -> Path:
    from sklearn.datasets import load_iris

    X, y = load_iris(return_X_y=True)
    frame = pd.DataFrame(X, columns=IRIS_FEATURES)
    frame["target"] = frame["prediction"] = y
    for k in range(3):
        frame[f"proba_{k}"] = (y == k).astype(float)
    frame.to_parquet(path)
    return path


def _start(argv: list[str], env: dict[str, str], log: Path):
    import subprocess

    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """A monitor with the API token from a file, a guarded service, an open service (started in parallel)."""
    from monitor.reference import install_reference

    root = tmp_path_factory.mktemp("auth")
    token_file = root / "secrets" / "api-token"
    token_file.parent.mkdir()
    token_file.write_text(API_TOKEN + "\n")
    model = build_iris(root / "iris")
    mon_port, port, open_port, grpc_port = free_port(), free_port(), free_port(), free_port()
    monitor = f"http://127.0.0.1:{mon_port}"
    mon_settings = load({"VIGIL_HOME": str(root / "monitor"), "VIGIL_API_TOKEN_FILE": str(token_file),
                         "VIGIL_LIFECYCLE_WORKER": "0"})
    reference = _iris_reference(root / "ref.parquet")
    for version in ("1", "2"):  # v2: only the in-process producer below sends it, so its rows count alone
        install_reference(mon_settings, "iris", version, reference, "classification", "target")
    common = {"VIGIL_MODEL": str(model.folder), "VIGIL_MONITOR_URL": monitor, "VIGIL_PREDICTION_LOG": "off",
              "VIGIL_RELOAD_WEBHOOK_SECRET": WEBHOOK_SECRET}
    guarded = load({**common, "VIGIL_HOME": str(root / "guarded"), "VIGIL_GRPC_PORT": str(grpc_port),
                    "VIGIL_API_TOKEN_FILE": str(token_file), "VIGIL_PREDICT_TOKEN": PREDICT_TOKEN,
                    "VIGIL_PROFILE_SLICE_SECONDS": "0.05"})
    open_ = load({**common, "VIGIL_HOME": str(root / "open"), "VIGIL_GRPC_PORT": "0", "VIGIL_PROFILE_STREAM": "0"})
    procs = []
    try:
        mon_env = {**process_env(mon_settings), **to_env(mon_settings)}
        procs.append((_start([sys.executable, "-m", "monitor", "--port", str(mon_port)], mon_env, root / "monitor.log"),
                      f"{monitor}/healthz", root / "monitor.log"))
        for settings, serve_port, name in ((guarded, port, "guarded"), (open_, open_port, "open")):
            argv, env = serve_command(settings, port=serve_port, workers=1)
            env["BENTOML_HOME"] = str(settings.home / "bentoml")
            log = root / f"{name}.log"
            procs.append((_start(argv, env, log), f"http://127.0.0.1:{serve_port}/readyz", log))
        for proc, url, log in procs:
            wait_ready(url, proc, 120, log)
        yield {"monitor": monitor, "service": f"http://127.0.0.1:{port}", "open": f"http://127.0.0.1:{open_port}",
               "grpc": f"127.0.0.1:{grpc_port}", "root": root, "model": model}
    finally:
        for proc, _, _ in procs:
            stop_process_group(proc)


PROTECTED = [("get", "/v1/status", None), ("get", "/v1/drift?model=iris", None), ("get", "/report", None),
             ("post", "/v1/labels", []), ("post", "/v1/profiles", {"v": 1}), ("post", "/v1/actions/alert", {"alerts": []})]


@pytest.mark.integration
def test_monitor_routes_need_the_api_token_and_refusals_are_counted(stack) -> None:
    monitor = stack["monitor"]
    before = _metric(monitor, "vigil_monitor_rejected_total", '{reason="unauthorized"}')
    refused = 0
    for method, path, body in PROTECTED:
        for headers in ({}, bearer("wrong"), {"Authorization": API_TOKEN}):  # the last lacks the scheme
            response = requests.request(method, monitor + path, json=body, headers=headers, timeout=30)
            refused += 1
            assert response.status_code == 401, (path, headers, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.json() == {"error": {"reason": "unauthorized",
                                                 "message": f"missing or invalid bearer token for {path.split('?')[0]}"}}
        ok = requests.request(method, monitor + path, json=body, headers=bearer(API_TOKEN), timeout=30)
        assert ok.status_code != 401, (path, ok.text)  # past the gate: the route's own answer
        assert ok.status_code < 500, (path, ok.text)
        if method == "get":
            assert ok.status_code == 200, (path, ok.text)
    for path in ("/healthz", "/metrics", "/openapi.json"):  # scrapes and probes carry no token
        assert requests.get(monitor + path, timeout=10).status_code == 200, path
    assert _metric(monitor, "vigil_monitor_rejected_total", '{reason="unauthorized"}') == before + refused


def _predict_routes(base: str) -> list[tuple[str, dict]]:
    oip = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROW["instances"][0]}]}
    return [(f"{base}/predict", ROW), (f"{base}/v1/predict", ROW), (f"{base}/v2/models/iris/infer", oip),
            (f"{base}/v2/models/iris/versions/1/infer", oip)]


@pytest.mark.integration
def test_service_prediction_routes_need_the_predict_token(stack) -> None:
    base = stack["service"]
    before = _metric(base, "vigil_rejected_requests_total", '{reason="unauthorized"}')
    refused = 0
    for url, body in _predict_routes(base):
        for headers in ({}, bearer("wrong"), bearer(API_TOKEN)):  # the API token is not the predict token
            response = requests.post(url, json=body, headers=headers, timeout=10)
            refused += 1
            assert response.status_code == 401, (url, headers, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            error = response.json()
            # /predict and /v1/predict: {"error": {reason, message}}; OIP: {"error": message, "reason"}
            reason, message = (error["error"]["reason"], error["error"]["message"]) if isinstance(error["error"], dict) \
                else (error["reason"], error["error"])
            assert reason == "unauthorized" and "missing or invalid bearer token for /" in message, error
        ok = requests.post(url, json=body, headers=bearer(PREDICT_TOKEN), timeout=10)
        assert ok.status_code == 200, (url, ok.text)
    # a refused body is not even read: an unauthenticated caller learns nothing about validation
    bad = requests.post(f"{base}/v1/predict", data=b"{not json", headers={"content-type": "application/json"}, timeout=10)
    assert bad.status_code == 401
    refused += 1
    for path in ("/metadata", "/metrics", "/readyz", "/livez", "/v2/health/ready", "/v2/models/iris", "/openapi.json"):
        assert requests.get(base + path, timeout=10).status_code == 200, path
    assert _metric(base, "vigil_rejected_requests_total", '{reason="unauthorized"}') == before + refused


@pytest.mark.integration
def test_grpc_model_infer_needs_the_predict_token_and_reads_stay_open(stack) -> None:
    request = pb.ModelInferRequest(model_name="iris")
    request.inputs.add(name="X", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend(ROW["instances"][0])
    before = _metric(stack["service"], "vigil_rejected_requests_total", '{reason="unauthorized"}')
    with grpc.insecure_channel(stack["grpc"]) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        assert stub.ModelMetadata(pb.ModelMetadataRequest(name="iris"), timeout=10).name == "iris"
        for metadata in ((), (("authorization", "Bearer wrong"),), (("authorization", PREDICT_TOKEN),)):
            with pytest.raises(grpc.RpcError) as caught:
                stub.ModelInfer(request, metadata=metadata, timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
            assert "missing or invalid bearer token" in caught.value.details()
        answer = stub.ModelInfer(request, metadata=(("authorization", f"Bearer {PREDICT_TOKEN}"),), timeout=10)
        assert answer.model_name == "iris" and answer.outputs
    assert _metric(stack["service"], "vigil_rejected_requests_total", '{reason="unauthorized"}') == before + 3


@pytest.mark.integration
def test_service_webhook_takes_the_api_token_or_a_signature(stack) -> None:
    url = f"{stack['service']}/v1/webhooks/mlflow"
    body = b'{"entity": "model_version_alias", "action": "created", "data": {"name": "iris", "alias": "champion"}}'
    json_type = {"content-type": "application/json"}
    for headers in ({}, bearer("wrong"), bearer(PREDICT_TOKEN)):
        response = requests.post(url, data=body, headers={**json_type, **headers}, timeout=10)
        assert response.status_code == 401 and response.json()["error"]["reason"] == "unauthorized", response.text
    # Past the gate, this server (a fixed model folder) answers 409: nothing to reload.
    for headers in (bearer(API_TOKEN), _signed(body)):
        response = requests.post(url, data=body, headers={**json_type, **headers}, timeout=10)
        assert response.status_code == 409 and response.json()["error"]["reason"] == "not_following_alias", response.text


@pytest.mark.integration
def test_without_tokens_predictions_and_the_webhook_are_open(stack) -> None:
    base = stack["open"]
    for url, body in _predict_routes(base):
        assert requests.post(url, json=body, timeout=10).status_code == 200, url
    body = b'{"entity": "x", "action": "y", "data": {}}'
    hook = requests.post(f"{base}/v1/webhooks/mlflow", data=body, headers=_signed(body), timeout=10)
    assert hook.status_code == 409, hook.text  # signed as before, no token asked
    assert _metric(base, "vigil_rejected_requests_total", '{reason="unauthorized"}') == 0


def _rows_ingested(stack, version: str = "1") -> int:
    status = requests.get(f"{stack['monitor']}/v1/status", headers=bearer(API_TOKEN), timeout=30).json()
    return sum(v["rows_ingested"] for v in status["versions"] if (v["model"], v["version"]) == ("iris", version))


@pytest.mark.integration
def test_the_service_delivers_profiles_to_the_guarded_monitor(stack) -> None:
    before = _rows_ingested(stack)
    session = requests.Session()
    for _ in range(10):
        assert session.post(f"{stack['service']}/predict", json=ROW, headers=bearer(PREDICT_TOKEN), timeout=10).ok
    _wait_for(lambda: _rows_ingested(stack) >= before + 10, 30, "profiles of 10 rows reaching the monitor")
    assert _metric(stack["service"], "vigil_profiles_unauthorized_total") == 0


@pytest.mark.integration
def test_a_wrong_api_token_spools_profiles_instead_of_dropping_them(stack) -> None:
    from prometheus_client import CollectorRegistry

    from serving.producer.stream import ProfileStreamer
    from vigil.served_batch import ServedBatch

    model = stack["model"]
    rows = np.asarray(model.rows, dtype=float)
    settings = load({"VIGIL_HOME": str(stack["root"] / "producer"), "VIGIL_MONITOR_URL": stack["monitor"],
                     "VIGIL_API_TOKEN": "wrong", "VIGIL_PROFILE_SLICE_SECONDS": "0.05"})
    batch = ServedBatch("iris", "2", {n: rows[:, i] for i, n in enumerate(IRIS_FEATURES)}, model.labels,
                        scores=model.probabilities, classes=[0, 1, 2])
    wrong = ProfileStreamer(settings, registry=CollectorRegistry())
    wrong.submit(batch)
    _wait_for(lambda: wrong.stats()["spooled"] == 1 and wrong.stats()["unauthorized"] >= 1, 20, "the 401 to be spooled")
    wrong.close()
    stats = wrong.stats()
    assert stats["rejected"] == 0 and stats["sent"] == 0 and list(settings.spool_dir.glob("*.json"))
    # The token is fixed (a restart with the right secret): the spooled profile is replayed.
    fixed = ProfileStreamer(replace(settings, api_token=API_TOKEN), registry=CollectorRegistry())
    fixed.start()
    try:
        assert fixed.flush(20), fixed.stats()
        assert fixed.stats()["replayed"] == 1
    finally:
        fixed.close()
    assert _rows_ingested(stack, "2") == len(model.rows)
