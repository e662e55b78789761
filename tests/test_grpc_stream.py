"""OIP ModelStreamInfer with Triton's stock streaming client, against a real `bentoml serve`."""

from __future__ import annotations

import queue
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from helpers import free_port, metric, running_server
from serving_models import build_iris
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc
from tritonclient.utils import InferenceServerException

from serving.launch import serve_command
from vigil.config import load
from vigil.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration

TOKEN = "stream-token-5c1e"
BEARER = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    home: Path = tmp_path_factory.mktemp("grpc-stream")
    model = build_iris(home / "iris")
    grpc_port, port = free_port(), free_port()
    settings = load({"VIGIL_HOME": str(home), "VIGIL_MODEL": str(model.folder), "VIGIL_GRPC_PORT": str(grpc_port),
                     "VIGIL_PROFILE_STREAM": "0", "VIGIL_PREDICT_TOKEN": TOKEN, "VIGIL_MAX_ROWS_PER_REQUEST": "50"})
    argv, env = serve_command(settings, port=port, workers=1)
    env["BENTOML_HOME"] = str(home / "bentoml")
    base = f"http://127.0.0.1:{port}"
    with running_server(argv, env, f"{base}/readyz", timeout=90, cwd=PROJECT_ROOT):
        yield model, f"127.0.0.1:{grpc_port}", base


def _input(rows: np.ndarray) -> list:
    tensor = grpcclient.InferInput("X", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32))
    return [tensor]


def _stream(target: str, sends: list[tuple[str, np.ndarray]], headers: dict | None = BEARER) -> list:
    """Send every (id, rows) on one stream with the stock client; the (result, error) of each answer."""
    answers: queue.SimpleQueue = queue.SimpleQueue()
    with grpcclient.InferenceServerClient(target) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
        for request_id, rows in sends:
            client.async_stream_infer("iris", _input(rows), request_id=request_id)
        got = [answers.get(timeout=20) for _ in sends]
        client.stop_stream()
    return got


def test_stock_client_streams_requests_and_gets_each_answer_by_id(served):
    model, target, base = served
    rows = np.array(model.rows, dtype=np.float32)
    sends = [(f"s{i}", rows[i % len(rows):i % len(rows) + 1 + i % 3]) for i in range(60)]
    before = metric(base, "vigil_request_seconds_count", '{protocol="grpc"}')
    answers = _stream(target, sends)
    assert all(error is None for _, error in answers), [e for _, e in answers if e is not None][:3]
    by_id = {result.get_response().id: result for result, _ in answers}
    assert sorted(by_id) == sorted(i for i, _ in sends)  # every request answered once, under its own id
    for request_id, sent in sends:
        start = int(request_id[1:]) % len(rows)
        assert by_id[request_id].as_numpy("label").tolist() == model.labels[start:start + len(sent)], request_id
        np.testing.assert_allclose(by_id[request_id].as_numpy("probabilities"),
                                   model.probabilities[start:start + len(sent)], atol=1e-5)
    # counted as gRPC requests, like ModelInfer
    assert metric(base, "vigil_request_seconds_count", '{protocol="grpc"}') - before == len(sends)


def test_a_bad_request_mid_stream_gets_error_message_and_the_stream_goes_on(served):
    model, target, base = served
    good = np.array(model.rows[:1], dtype=np.float32)
    bad = np.array([[1.0, np.nan, 3.0, 4.0]], dtype=np.float32)
    narrow = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    before = metric(base, "vigil_rejected_requests_total", '{reason="non_finite"}')
    answers = _stream(target, [("a", good), ("b", bad), ("c", good), ("d", narrow), ("e", good)])
    errors = [str(error) for _, error in answers if error is not None]
    results = sorted(result.get_response().id for result, error in answers if error is None)
    assert results == ["a", "c", "e"], (results, errors)
    assert len(errors) == 2 and any("NaN" in e for e in errors) and any("expected shape [rows, 4]" in e for e in errors)
    assert metric(base, "vigil_rejected_requests_total", '{reason="non_finite"}') == before + 1


def test_a_refused_stream_answer_carries_its_id_and_reason(served):
    """Raw stub: the error answer names the request it belongs to (the stock client hides it)."""
    _, target, _ = served
    request = pb.ModelInferRequest(model_name="nope", id="x7")
    request.inputs.add(name="X", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend([1, 2, 3, 4])
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        (answer,) = list(stub.ModelStreamInfer(iter([request]), metadata=tuple(BEARER.items()), timeout=10))
    assert answer.infer_response.id == "x7" and "not served here" in answer.error_message
    assert answer.infer_response.parameters["vigil-reason"].string_param == "model_not_found"


@pytest.mark.parametrize("headers", [None, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}])
def test_a_stream_without_the_predict_token_ends_unauthenticated(served, headers):
    model, target, base = served
    before = metric(base, "vigil_rejected_requests_total", '{reason="unauthorized"}')
    answers: queue.SimpleQueue = queue.SimpleQueue()
    with grpcclient.InferenceServerClient(target) as client:
        client.start_stream(callback=lambda result, error: answers.put((result, error)), headers=headers)
        try:
            client.async_stream_infer("iris", _input(np.array(model.rows[:1])), request_id="u")
        except InferenceServerException as refused:  # the server ended the stream before the client sent
            assert "no longer in valid state" in refused.message()
        result, error = answers.get(timeout=20)
        client.stop_stream()
    assert result is None and error.status() == "StatusCode.UNAUTHENTICATED", error
    assert "missing or invalid bearer token" in error.message()
    assert metric(base, "vigil_rejected_requests_total", '{reason="unauthorized"}') == before + 1
