"""Issue 7's limits, each enforced on a real `bentoml serve` with a small value set by env.

Already covered elsewhere and not repeated: body 413 and rows 400 on /predict
(tests/test_service_http.py), rows 400 / INVALID_ARGUMENT on OIP REST and gRPC
(tests/test_oip.py), queue shedding with 503 under c=256 (tests/test_bench_smoke.py) and
the monitor's 413 (tests/test_monitor_stream.py). Here: the concurrent-request limit across
every predict route and gRPC, the body limit on the other HTTP predict routes, and the gRPC
message size.
"""

from __future__ import annotations

import re
import socket
import time

import grpc
import numpy as np
import pytest
import requests
from serving_models import build_iris
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from vigil.config import load
from vigil.procs import free_port, running
from serving.launch import serve_command
from vigil.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration

MAX_CONCURRENT = 2
BODY_LIMIT = 4096
GRPC_LIMIT = 2048


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("limits")
    model = build_iris(home / "iris")
    port, grpc_port = free_port(), free_port()
    settings = load({"VIGIL_HOME": str(home), "VIGIL_MODEL": str(model.folder), "VIGIL_GRPC_PORT": str(grpc_port),
                     "VIGIL_MAX_CONCURRENT_REQUESTS": str(MAX_CONCURRENT), "VIGIL_MAX_BODY_BYTES": str(BODY_LIMIT),
                     "VIGIL_GRPC_MAX_MESSAGE_BYTES": str(GRPC_LIMIT), "VIGIL_PROFILE_STREAM": "0",
                     "VIGIL_PREDICTION_LOG": "off"})
    argv, env = serve_command(settings, port=port)
    env["BENTOML_HOME"] = str(home / "bentoml")
    base = f"http://127.0.0.1:{port}"
    with running(argv, env, f"{base}/readyz", log_path=home / "serve.log", timeout=90, cwd=PROJECT_ROOT), \
            grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        yield base, port, pb_grpc.GRPCInferenceServiceStub(channel), model


def _infer_request(rows: np.ndarray, request_id: str = "") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="iris", id=request_id)
    tensor = request.inputs.add(name="X", datatype="FP32")
    tensor.shape.extend(rows.shape)
    request.raw_input_contents.append(rows.astype(np.float32).tobytes())
    return request


def _rejected(base: str, reason: str) -> float:
    text = requests.get(f"{base}/metrics", timeout=10).text
    match = re.search(rf'^vigil_rejected_requests_total\{{reason="{reason}"\}} ([0-9.e+]+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


class HeldRequest:
    """A POST /predict whose body is only half sent: admitted, and in flight until `finish`.

    Holding requests open this way makes "N requests in flight" exact, where firing a burst
    at a fast model would only overlap by chance.
    """

    def __init__(self, port: int, body: bytes) -> None:
        self.body = body
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        head = f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" \
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        self.sock.sendall(head.encode() + body[:5])

    def finish(self) -> tuple[int, bytes]:
        self.sock.sendall(self.body[5:])
        answer = b""
        while chunk := self.sock.recv(65536):
            answer += chunk
        self.sock.close()
        head, _, payload = answer.partition(b"\r\n\r\n")
        return int(head.split()[1]), payload


def _until_refused(base: str, body: dict, timeout: float = 5.0) -> requests.Response:
    """POST until the server has admitted the held requests and refuses this one."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.post(f"{base}/predict", json=body, timeout=10)
        if response.status_code == 503 or time.monotonic() > deadline:
            return response
        time.sleep(0.02)


def test_concurrent_requests_beyond_the_limit_get_503_on_every_route_and_grpc(server) -> None:
    base, port, stub, model = server
    one = {"instances": model.rows[:1]}
    before = _rejected(base, "too_many_requests")
    held = [HeldRequest(port, b'{"instances": %s}' % str(model.rows[:3]).encode()) for _ in range(MAX_CONCURRENT)]
    refused = _until_refused(base, one)
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["reason"] == "too_many_requests" and "VIGIL_MAX_CONCURRENT_REQUESTS" in error["message"], error
    assert refused.headers["Retry-After"] == "1"
    # the other HTTP predict routes and gRPC share the same per-worker count
    native = requests.post(f"{base}/v1/predict", json=one, timeout=10)
    assert native.status_code == 503 and native.json()["error"]["reason"] == "too_many_requests", native.text
    body = {"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP64", "data": model.rows[:1]}]}
    oip = requests.post(f"{base}/v2/models/iris/infer", json=body, timeout=10)
    assert oip.status_code == 503 and oip.json()["reason"] == "too_many_requests" and oip.headers["Retry-After"] == "1"
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_infer_request(np.array(model.rows[:1])), timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "VIGIL_MAX_CONCURRENT_REQUESTS" in info.value.details()
    assert ("vigil-reason", "too_many_requests") in info.value.trailing_metadata()
    # the held requests were admitted, not harmed: they finish with their answers
    for request in held:
        status, payload = request.finish()
        assert status == 200 and b'"predictions":%s' % str(model.labels[:3]).replace(" ", "").encode() in payload, payload
    assert requests.post(f"{base}/predict", json=one, timeout=10).status_code == 200
    assert stub.ModelInfer(_infer_request(np.array(model.rows[:1])), timeout=10).model_name == "iris"
    assert _rejected(base, "too_many_requests") >= before + 4


def test_body_limit_holds_on_every_http_predict_route(server) -> None:
    base, _, _, _ = server
    big = b'{"instances": "' + b"x" * BODY_LIMIT + b'"}'
    for path in ("/v2/models/iris/infer", "/v1/predict"):
        response = requests.post(f"{base}{path}", data=big, headers={"Content-Type": "application/json"}, timeout=10)
        assert response.status_code == 413, (path, response.status_code, response.text[:200])
        assert str(BODY_LIMIT) in response.text, (path, response.text[:200])
        # chunked, with no Content-Length to refuse early on: counted while it streams in
        chunked = requests.post(f"{base}{path}", data=iter([big[:2048], big[2048:]]), timeout=10)
        assert chunked.status_code == 413 and chunked.json() is not None, (path, chunked.text[:200])


def test_grpc_message_over_the_limit_is_resource_exhausted_with_a_message(server) -> None:
    base, _, stub, model = server
    request = _infer_request(np.array(model.rows[:1]), request_id="x" * GRPC_LIMIT)  # a big id pads the message
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request, timeout=10)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in info.value.details() and str(GRPC_LIMIT) in info.value.details(), info.value.details()
    assert stub.ModelInfer(_infer_request(np.array(model.rows[:1])), timeout=10).outputs
