"""TLS by configuration: a real `bentoml serve` (HTTP + gRPC) and a real monitor on a certificate made here.

The test makes its own CA and a server certificate for 127.0.0.1 / localhost, turns TLS on
with VIGIL_TLS_CERT_FILE / VIGIL_TLS_KEY_FILE and trusts the CA with VIGIL_TLS_CA_FILE: the
service's producer must then stream profiles to the https monitor, and every client that
does not trust the CA (or speaks plain HTTP / insecure gRPC) must be refused.
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.grpc as grpcclient
from helpers import wait_for
from serving_models import IRIS_FEATURES, BuiltModel, build_iris
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from monitor.reference import install_reference
from vigil.config import Settings, load, replace
from vigil.procs import free_port, running
from serving.launch import serve_command, service_options


# -- certificates ---------------------------------------------------------------------------


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a test CA and a server certificate it signed, for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = {"not_valid_before": now - datetime.timedelta(hours=1), "not_valid_after": now + datetime.timedelta(days=1)}

    def builder(subject: x509.Name, issuer: x509.Name, public_key) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
                .serial_number(x509.random_serial_number()).not_valid_before(valid["not_valid_before"])
                .not_valid_after(valid["not_valid_after"])
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Vigil test CA")])
    ca = (builder(ca_name, ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]), ca_name, key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


# -- configuration (no processes) -------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> tuple[Path, Path, Path]:
    return make_certificates(tmp_path_factory.mktemp("certs"))


def test_tls_settings_turn_on_bentoml_ssl_and_the_client_trust(certs) -> None:
    ca, cert, key = certs
    settings = load({"VIGIL_TLS_CERT_FILE": str(cert), "VIGIL_TLS_KEY_FILE": str(key), "VIGIL_TLS_CA_FILE": str(ca)})
    assert settings.tls_enabled and settings.scheme == "https" and settings.tls_verify == str(ca)
    # Through the service config (a built bento carries it), not `bentoml serve` flags.
    assert service_options(settings)["ssl"] == {"enabled": True, "certfile": str(cert), "keyfile": str(key)}
    argv, env = serve_command(settings, port=1234)
    assert not any(a.startswith("--ssl") for a in argv) and env["VIGIL_TLS_CERT_FILE"] == str(cert)
    plain = load({})
    assert not plain.tls_enabled and plain.scheme == "http" and plain.tls_verify is True
    assert "ssl" not in service_options(plain)


def test_bad_tls_settings_are_one_line_config_errors(certs, tmp_path) -> None:
    ca, cert, key = certs
    with pytest.raises(ValueError, match="VIGIL_TLS_CERT_FILE is set, VIGIL_TLS_KEY_FILE is not"):
        load({"VIGIL_TLS_CERT_FILE": str(cert)})
    with pytest.raises(ValueError, match="VIGIL_TLS_KEY_FILE is set, VIGIL_TLS_CERT_FILE is not"):
        load({"VIGIL_TLS_KEY_FILE": str(key)})
    with pytest.raises(ValueError, match=r"VIGIL_TLS_CA_FILE=.*nope.pem: cannot read the file"):
        load({"VIGIL_TLS_CA_FILE": str(tmp_path / "nope.pem")})
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ValueError, match="VIGIL_TLS_CERT_FILE=.*junk.pem: not a PEM file"):
        load({"VIGIL_TLS_CERT_FILE": str(tmp_path / "junk.pem"), "VIGIL_TLS_KEY_FILE": str(key)})
    other_key = make_certificates(tmp_path / "other")[2]
    with pytest.raises(ValueError, match="cannot use .*server.pem with .*server.key"):
        load({"VIGIL_TLS_CERT_FILE": str(cert), "VIGIL_TLS_KEY_FILE": str(other_key)})


# -- a TLS service and a TLS monitor ----------------------------------------------------------


@dataclass
class Stack:
    base: str  # https://127.0.0.1:PORT of the service
    monitor: str
    grpc: str  # 127.0.0.1:PORT
    ca: Path
    model: BuiltModel
    settings: Settings


def _install_reference(settings: Settings, model: BuiltModel) -> None:
    """The monitor's reference for the folder-served iris (no registry in this test)."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    fitted = LogisticRegression(max_iter=500).fit(X, y)
    ref = pd.DataFrame(X, columns=IRIS_FEATURES)
    ref["target"], ref["prediction"] = y, fitted.predict(X)
    for i, column in enumerate(fitted.predict_proba(X).T):
        ref[f"proba_{i}"] = column
    ref.to_parquet(settings.home / "iris-ref.parquet")
    install_reference(settings, model.schema.model_name, model.schema.model_version, settings.home / "iris-ref.parquet",
                      "classification", "target")


def _stack(home: Path, certs: tuple[Path, Path, Path], extra: dict[str, str] | None = None):
    ca, cert, key = certs
    model = build_iris(home / "iris")
    port, grpc_port, monitor_port = free_port(), free_port(), free_port()
    monitor = f"https://127.0.0.1:{monitor_port}"
    settings = load({"VIGIL_HOME": str(home), "VIGIL_MODEL": str(model.folder), "VIGIL_GRPC_PORT": str(grpc_port),
                     "VIGIL_TLS_CERT_FILE": str(cert), "VIGIL_TLS_KEY_FILE": str(key), "VIGIL_TLS_CA_FILE": str(ca),
                     "VIGIL_MONITOR_URL": monitor, "VIGIL_PREDICTION_LOG": "off", "VIGIL_LIFECYCLE_WORKER": "0",
                     "VIGIL_PROFILE_SLICE_SECONDS": "0.05", **(extra or {})})
    _install_reference(settings, model)
    argv, env = serve_command(settings, port=port)
    env["BENTOML_HOME"] = str(home / "bentoml")
    base = f"https://127.0.0.1:{port}"
    with running([sys.executable, "-m", "monitor", "--port", str(monitor_port)], env, f"{monitor}/healthz",
                 log_path=home / "monitor.log", timeout=60, verify=str(ca)), \
            running(argv, env, f"{base}/readyz", log_path=home / "serve.log", timeout=90, verify=str(ca)):
        yield Stack(base, monitor, f"127.0.0.1:{grpc_port}", ca, model, settings)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, certs):
    yield from _stack(tmp_path_factory.mktemp("tls-stack"), certs)


def _served_rows(stack: Stack, headers: dict[str, str] | None = None) -> int:
    """Rows of iris the service answered, from its own /metrics (every route, both protocols)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(f"{stack.base}/metrics", verify=str(stack.ca), headers=headers, timeout=10).text
    return int(sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == "vigil_predictions_total" and s.labels.get("model") == "iris"
                   and s.labels.get("outcome") == "ok"))


def _ingested(stack: Stack, headers: dict[str, str] | None = None) -> tuple[int, int]:
    """(rows the monitor ingested, rows the service answered) once they agree or 30 s passed, after a settle."""
    verify = str(stack.ca)

    def count() -> int:
        versions = requests.get(f"{stack.monitor}/v1/status", verify=verify, headers=headers, timeout=10).json()
        return sum(v["rows_ingested"] for v in versions["versions"] if v["model"] == "iris")

    served = _served_rows(stack)
    deadline = time.monotonic() + 30
    while count() < served and time.monotonic() < deadline:
        time.sleep(0.3)
    time.sleep(1.0)  # a duplicate delivery would land by now: exactly once, not at least once
    return count(), served


@pytest.mark.integration
def test_every_http_route_answers_over_https(stack: Stack) -> None:
    verify = str(stack.ca)
    answer = requests.post(f"{stack.base}/predict", json={"instances": stack.model.rows}, verify=verify, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"] == stack.model.labels
    native = requests.post(f"{stack.base}/v1/predict", json={"instances": stack.model.rows[:2]}, verify=verify, timeout=10)
    assert native.status_code == 200 and native.json()["predictions"] == stack.model.labels[:2], native.text
    body = {"inputs": [{"name": "X", "shape": [2, 4], "datatype": "FP64", "data": stack.model.rows[:2]}]}
    oip = requests.post(f"{stack.base}/v2/models/iris/infer", json=body, verify=verify, timeout=10)
    assert oip.status_code == 200 and oip.json()["outputs"][0]["data"] == stack.model.labels[:2], oip.text
    assert requests.get(f"{stack.base}/readyz", verify=verify, timeout=10).status_code == 200
    assert "vigil_predictions_total" in requests.get(f"{stack.base}/metrics", verify=verify, timeout=10).text


@pytest.mark.integration
def test_plain_http_and_untrusted_https_are_refused(stack: Stack) -> None:
    for url in (stack.base, stack.monitor):
        plain = url.replace("https://", "http://")
        with pytest.raises(requests.ConnectionError):  # the TLS port cannot speak plain HTTP
            requests.get(f"{plain}/metrics", timeout=10)
        with pytest.raises(requests.exceptions.SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            requests.get(f"{url}/metrics", timeout=10, verify=True)  # the system store lacks the test CA


def _infer(stub: pb_grpc.GRPCInferenceServiceStub, rows: np.ndarray) -> pb.ModelInferResponse:
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="X", datatype="FP32")
    tensor.shape.extend(rows.shape)
    request.raw_input_contents.append(rows.astype(np.float32).tobytes())
    return stub.ModelInfer(request, timeout=10)


@pytest.mark.integration
def test_grpc_serves_tls_only(stack: Stack) -> None:
    rows = np.array(stack.model.rows, dtype=np.float32)
    with grpcclient.InferenceServerClient(stack.grpc, ssl=True, root_certificates=str(stack.ca)) as client:
        tensor = grpcclient.InferInput("X", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows)
        assert client.infer("iris", [tensor]).as_numpy("label").tolist() == stack.model.labels
    with grpc.insecure_channel(stack.grpc) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _infer(pb_grpc.GRPCInferenceServiceStub(channel), rows[:1])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    # a TLS channel that does not trust the test CA (a different, freshly made one) is refused too
    stranger = make_certificates(stack.ca.parent / "stranger")[0]
    with grpc.secure_channel(stack.grpc, grpc.ssl_channel_credentials(stranger.read_bytes())) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _infer(pb_grpc.GRPCInferenceServiceStub(channel), rows[:1])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.integration
def test_producer_streams_profiles_to_the_https_monitor(stack: Stack) -> None:
    verify = str(stack.ca)
    rows = stack.model.rows
    for _ in range(3):
        answer = requests.post(f"{stack.base}/predict", json={"instances": rows}, verify=verify, timeout=10)
        assert answer.status_code == 200, answer.text
    ingested, served = _ingested(stack)
    assert served >= 3 * len(rows) and ingested == served, f"{ingested} rows reached the monitor over TLS, {served} were served"


@pytest.mark.integration
def test_lifecycle_worker_and_report_read_the_https_monitor(stack: Stack, tmp_path) -> None:
    from lifecycle.worker import monitor_drift_all
    from monitor.lifecycle_host import worker_settings
    from monitor.report import write_report

    verify = str(stack.ca)  # the monitor knows iris once a profile of it arrived: serve one first
    assert requests.post(f"{stack.base}/predict", json={"instances": stack.model.rows}, verify=verify, timeout=10).ok
    wait_for(lambda: any(v["model"] == "iris" for v in requests.get(
        f"{stack.monitor}/v1/status", verify=verify, timeout=10).json()["versions"]), 30, "an iris profile over TLS")
    port = int(stack.monitor.rsplit(":", 1)[1])
    hosted = worker_settings(stack.settings, port)  # what the monitor's own lifecycle worker polls
    assert hosted.monitor_url == stack.monitor
    assert any(v["model"] == "iris" for v in monitor_drift_all(hosted))
    page = write_report(stack.settings, tmp_path / "report.html").read_text()
    assert "Vigil drift report" in page and "iris" in page
    # without the CA: a clear error, not a silent fallback to the monitor's saved state
    with pytest.raises(PermissionError, match="VIGIL_TLS_CA_FILE"):
        write_report(replace(stack.settings, tls_ca_file=""), tmp_path / "untrusted.html")


# -- TLS with both tokens on ------------------------------------------------------------------

API_TOKEN, PREDICT_TOKEN = "api-" + "a" * 28, "predict-" + "p" * 24


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, certs):
    """The TLS stack with VIGIL_API_TOKEN and VIGIL_PREDICT_TOKEN both set."""
    yield from _stack(tmp_path_factory.mktemp("tls-tokens"), certs,
                      {"VIGIL_API_TOKEN": API_TOKEN, "VIGIL_PREDICT_TOKEN": PREDICT_TOKEN})


@pytest.mark.integration
def test_tls_with_both_tokens(guarded: Stack) -> None:
    verify, rows = str(guarded.ca), guarded.model.rows
    predict_auth, api_auth = {"Authorization": f"Bearer {PREDICT_TOKEN}"}, {"Authorization": f"Bearer {API_TOKEN}"}
    # HTTPS predictions: refused without the predict token (and with the API one), answered with it.
    for headers in (None, api_auth):
        refused = requests.post(f"{guarded.base}/predict", json={"instances": rows}, headers=headers, verify=verify,
                                timeout=10)
        assert refused.status_code == 401, refused.text
    answer = requests.post(f"{guarded.base}/predict", json={"instances": rows}, headers=predict_auth, verify=verify,
                           timeout=10)
    assert answer.status_code == 200 and answer.json()["predictions"] == guarded.model.labels, answer.text
    # gRPC over TLS: the same token as metadata.
    matrix = np.array(rows, dtype=np.float32)
    with grpcclient.InferenceServerClient(guarded.grpc, ssl=True, root_certificates=str(guarded.ca)) as client:
        tensor = grpcclient.InferInput("X", list(matrix.shape), "FP32")
        tensor.set_data_from_numpy(matrix)
        with pytest.raises(Exception, match="UNAUTHENTICATED"):
            client.infer("iris", [tensor])
        labels = client.infer("iris", [tensor], headers={"authorization": f"Bearer {PREDICT_TOKEN}"})
        assert labels.as_numpy("label").tolist() == guarded.model.labels
    # The profile stream carries the API token: every answered row reaches the monitor, once.
    assert requests.get(f"{guarded.monitor}/v1/status", verify=verify, timeout=10).status_code == 401
    ingested, served = _ingested(guarded, headers=api_auth)
    assert served == 2 * len(rows) and ingested == served, (ingested, served)
    # Prometheus scrapes both /metrics without a token.
    for url in (guarded.base, guarded.monitor):
        scrape = requests.get(f"{url}/metrics", verify=verify, timeout=10)
        assert scrape.status_code == 200 and "# TYPE" in scrape.text, url
