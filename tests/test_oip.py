"""Open Inference Protocol v2 over gRPC and REST, with Triton's own clients, against real `bentoml serve`."""

from __future__ import annotations

import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from helpers import free_port, running_server
from serving_models import build_iris, build_mixed
from tritonclient.utils import InferenceServerException

from loadtest.grpc_load import infer_request, run_grpc_load
from loadtest.wrk import run_wrk
from vigil.config import load
from serving.launch import serve_command
from vigil.paths import PROJECT_ROOT

pytestmark = pytest.mark.integration

MAX_BATCH = 8  # small, so that 5-row gRPC requests can never share a batch with each other


def _serve(home: Path, model: Path, workers: int = 1, **extra: str):
    grpc_port = free_port()
    settings = load({"VIGIL_HOME": str(home), "VIGIL_MODEL": str(model), "VIGIL_GRPC_PORT": str(grpc_port),
                     "VIGIL_PROFILE_STREAM": "0", **extra})
    port = free_port()
    argv, env = serve_command(settings, port=port, workers=workers)
    env["BENTOML_HOME"] = str(home / "bentoml")
    base = f"http://127.0.0.1:{port}"
    return running_server(argv, env, f"{base}/readyz", timeout=90, cwd=PROJECT_ROOT), base, grpc_port


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    home = tmp_path_factory.mktemp("oip-iris")
    model = build_iris(home / "iris")
    server, base, grpc_port = _serve(home, model.folder, VIGIL_MAX_ROWS_PER_REQUEST="50",
                                     VIGIL_MAX_BATCH_SIZE=str(MAX_BATCH))
    with server:
        with grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}") as g, \
                httpclient.InferenceServerClient(base.removeprefix("http://")) as h:
            yield model, g, h, base, grpc_port


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _inputs(module, rows: np.ndarray, datatype: str = "FP32", name: str = "X"):
    tensor = module.InferInput(name, list(rows.shape), datatype)
    tensor.set_data_from_numpy(rows)
    return [tensor]


def test_health_and_metadata_over_both_protocols(iris):
    _, g, h, _, _ = iris
    for client in (g, h):
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("iris")
    assert g.get_server_metadata().name == "vigil"
    meta = g.get_model_metadata("iris")
    assert meta.versions == ["1"] and [(i.name, i.datatype, list(i.shape)) for i in meta.inputs] == [("X", "FP32", [-1, 4])]
    assert [o.name for o in meta.outputs] == ["label", "probabilities"]
    rest = h.get_model_metadata("iris")
    assert rest["outputs"][0] == {"name": "label", "datatype": "INT64", "shape": [-1]}
    assert "one input [rows, n_features]" in rest["parameters"]["tensor_convention"]
    assert not h.is_model_ready("nope")
    with pytest.raises(InferenceServerException) as info:
        g.is_model_ready("nope")
    assert info.value.status() == "StatusCode.NOT_FOUND" and "serves 'iris'" in info.value.message()


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_infer_matches_sklearn_over_grpc_and_http(iris, datatype):
    model, g, h, _, _ = iris
    rows = np.array(model.rows, dtype={"FP32": np.float32, "FP64": np.float64}[datatype])
    for module, client in ((grpcclient, g), (httpclient, h)):
        result = client.infer("iris", _inputs(module, rows, datatype), request_id="r1")
        labels = result.as_numpy("label")
        assert labels.dtype == np.int64 and labels.shape == (len(rows),)
        assert labels.tolist() == model.labels
        np.testing.assert_allclose(result.as_numpy("probabilities"), model.probabilities, atol=1e-5)


@pytest.mark.parametrize("datatype", ["INT64", "INT32"])
def test_integer_inputs_answer_as_the_same_values_in_fp64(iris, datatype):
    model, g, h, _, _ = iris
    # Scaled so the integer rows still span the classes (iris truncated to ints would not).
    values = np.rint(np.array(model.rows) * 3)
    ints = values.astype({"INT64": np.int64, "INT32": np.int32}[datatype])
    for module, client in ((grpcclient, g), (httpclient, h)):
        as_fp64 = client.infer("iris", _inputs(module, values.astype(np.float64), "FP64"))
        as_int = client.infer("iris", _inputs(module, ints, datatype))
        assert as_int.as_numpy("label").tolist() == as_fp64.as_numpy("label").tolist()
        np.testing.assert_allclose(as_int.as_numpy("probabilities"), as_fp64.as_numpy("probabilities"), atol=1e-6)
    assert len(set(as_fp64.as_numpy("label").tolist())) >= 2  # the comparison covers more than one class


def test_requested_outputs_and_json_rest(iris):
    model, g, _, base, _ = iris
    rows = np.array(model.rows[:2], dtype=np.float32)
    only = g.infer("iris", _inputs(grpcclient, rows), outputs=[grpcclient.InferRequestedOutput("label")])
    assert only.as_numpy("label").tolist() == model.labels[:2] and only.as_numpy("probabilities") is None
    body = {"id": "j1", "inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP64", "data": model.rows[:2]}],
            "outputs": [{"name": "probabilities"}]}
    answer = requests.post(f"{base}/v2/models/iris/infer", json=body, timeout=5).json()
    assert answer["id"] == "j1" and [o["name"] for o in answer["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(np.reshape(answer["outputs"][0]["data"], (2, 3)), model.probabilities[:2], atol=1e-5)


BAD_GRPC = [
    (np.array([[1.0, np.nan, 3.0, 4.0]], np.float32), "FP32", "non_finite", "NaN"),
    (np.array([[1.0, 2.0, 3.0]], np.float32), "FP32", "", "expected shape [rows, 4]"),
    (np.zeros((0, 4), np.float32), "FP32", "", "no rows"),
    (np.zeros((51, 4), np.float32), "FP32", "", "limit is 50"),
    (np.array([[1, 2, 3, 4]], np.int16), "INT16", "", "accepted: FP32"),
    (np.array([[b"a", b"b", b"c", b"d"]], np.object_), "BYTES", "", "not BYTES"),
]


def test_bad_inputs_are_invalid_argument_with_a_message(iris):
    _, g, h, base, _ = iris
    for rows, datatype, _, words in BAD_GRPC:
        with pytest.raises(InferenceServerException) as info:
            g.infer("iris", _inputs(grpcclient, rows, datatype))
        assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and words in info.value.message(), info.value
        with pytest.raises(InferenceServerException) as info:
            h.infer("iris", _inputs(httpclient, rows, datatype))
        assert info.value.status() == "400" and words in info.value.message(), info.value
    # shape/data mismatch can't be built with the clients' helpers: send it by hand
    body = {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    answer = requests.post(f"{base}/v2/models/iris/infer", json=body, timeout=5)
    assert answer.status_code == 400 and answer.json()["reason"] == "shape_mismatch"
    assert "8 elements" in answer.json()["error"]
    with pytest.raises(InferenceServerException) as info:
        g.infer("iris", _inputs(grpcclient, np.ones((1, 4), np.float32)),
                outputs=[grpcclient.InferRequestedOutput("nope")])
    assert info.value.status() == "StatusCode.INVALID_ARGUMENT" and "unknown output" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        g.infer("other", _inputs(grpcclient, np.ones((1, 4), np.float32)))
    assert info.value.status() == "StatusCode.NOT_FOUND"
    assert requests.post(f"{base}/v2/models/other/infer", json=body, timeout=5).status_code == 404
    with pytest.raises(InferenceServerException) as info:
        g.get_model_repository_index()
    assert info.value.status() == "StatusCode.UNIMPLEMENTED"
    assert g.infer("iris", _inputs(grpcclient, np.ones((1, 4), np.float32))).as_numpy("label").shape == (1,)


def test_http_and_grpc_traffic_at_once_feeds_one_batcher(iris):
    """wrk (HTTP) and h2load (gRPC) at the same time: both counted, and batches holding both.

    vigil_batches_total{protocols="grpc+http"} counts batches with rows of both protocols:
    it can only grow if gRPC requests really join the HTTP routes' batches.
    """
    model, _, _, base, grpc_port = iris
    before = requests.get(f"{base}/metrics", timeout=5).text
    message = infer_request("iris", np.array(model.rows[:5]))
    with ThreadPoolExecutor(2) as pool:
        http = pool.submit(run_wrk, f"{base}/predict", json.dumps({"instances": model.rows[:1]}), 16, 2, None)
        grpc = pool.submit(run_grpc_load, f"127.0.0.1:{grpc_port}", message, 4, 1, None)
        results = [http.result(), grpc.result()]
    assert all(r.errors == 0 and r.requests > 0 for r in results), results
    after = requests.get(f"{base}/metrics", timeout=5).text

    def delta(name: str, labels: str = "") -> float:
        return _metric(after, name, labels) - _metric(before, name, labels)

    n_http = delta("vigil_request_seconds_count", '{protocol="http"}')
    n_grpc = delta("vigil_request_seconds_count", '{protocol="grpc"}')
    assert n_http >= results[0].requests and n_grpc >= results[1].requests  # per-protocol counter saw both
    # every answered row of both went through the batcher (plus requests cut off mid-flight when
    # the load tools stopped: at most one per connection)
    rows = n_http + 5 * n_grpc
    assert rows <= delta("vigil_batch_size_sum") <= rows + 16 + 5 * 4
    assert delta("vigil_batch_size_count") < n_http + n_grpc  # and requests were batched together
    shared = delta("vigil_batches_total", '{protocols="grpc+http"}')
    assert shared > 0, "no batch held both HTTP and gRPC requests"
    batches = sum(delta("vigil_batches_total", f'{{protocols="{p}"}}') for p in ("http", "grpc", "grpc+http"))
    assert batches >= delta("vigil_batch_size_count")  # every batch run was labelled
    assert n_grpc * 5 <= delta("vigil_batch_protocol_rows_sum", '{protocol="grpc"}') <= (n_grpc + 4) * 5
    assert sum(delta("vigil_batch_release_total", f'{{reason="{r}"}}') for r in ("full", "latency", "idle", "swap")) \
        == batches


def test_two_workers_serve_grpc_on_one_port_with_bytes_inputs(tmp_path):
    model = build_mixed(tmp_path / "mixed")
    server, base, grpc_port = _serve(tmp_path, model.folder, workers=2)
    names = ["age", "income", "city", "plan"]
    columns = {n: np.array([[r[i]] for r in model.rows], dtype=object if i >= 2 else np.float32)
               for i, n in enumerate(names)}
    with server as proc:
        deadline = time.monotonic() + 30
        while True:  # /readyz answers once one worker is up: wait for both gRPC listeners
            listeners = {p.pid for p in psutil.Process(proc.pid).children(recursive=True)
                         for c in p.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == grpc_port}
            if len(listeners) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert len(listeners) == 2, listeners
        for module in (grpcclient, httpclient):
            url = f"127.0.0.1:{grpc_port}" if module is grpcclient else base.removeprefix("http://")
            for _ in range(3):  # fresh connections: the kernel spreads them over both workers
                with module.InferenceServerClient(url) as client:
                    meta = client.get_model_metadata("mixed")
                    inputs = []
                    for name in names:
                        datatype = "BYTES" if columns[name].dtype == object else "FP32"
                        tensor = module.InferInput(name, list(columns[name].shape), datatype)
                        tensor.set_data_from_numpy(columns[name])
                        inputs.append(tensor)
                    result = client.infer("mixed", inputs)
                    assert [x.decode() for x in result.as_numpy("label")] == model.labels
                    np.testing.assert_allclose(result.as_numpy("probabilities"), model.probabilities, atol=1e-5)
        assert meta["inputs"][2] == {"name": "city", "datatype": "BYTES", "shape": [-1, 1]}
        bad = [module.InferInput("age", [1, 1], "BYTES")]
        bad[0].set_data_from_numpy(np.array([[b"old"]], dtype=object))
        with pytest.raises(InferenceServerException) as info, module.InferenceServerClient(url) as client:
            client.infer("mixed", bad)
        assert info.value.status() == "400" and "must be numeric" in info.value.message()
