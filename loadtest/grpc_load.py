"""gRPC load with Debian's `h2load` (nghttp2, C): OIP ModelInfer calls, read back as a LoadResult.

h2load speaks plain HTTP/2, which is all gRPC is on the wire: we POST one pre-framed
ModelInferRequest (1-byte compression flag, 4-byte big-endian length, protobuf bytes) to
/inference.GRPCInferenceService/ModelInfer with `content-type: application/grpc` and
`te: trailers`. h2load only sees HTTP statuses, and a failed RPC is still HTTP 200 with
a `grpc-status` trailer, so gRPC-level failures are counted separately: `check_rpc` makes
one real call first, and with `metrics_url` the server's own rejection counter is read
before and after the run (any increase counts as errors).

Streaming (`run_grpc_stream_load`): each h2load request is one ModelStreamInfer call whose
body holds `STREAM_MESSAGES` framed requests; the server answers each on the stream and
ends the call once all are answered. So `concurrency` requests are in flight as
concurrency / STREAM_MESSAGES connections each with one call of that many messages;
req/s counts messages, and the latency is the call's (every message in it was answered
within it: an upper bound on each message's). Refusals inside a stream travel as
`error_message` in an HTTP 200 body, so only the server's rejection counter sees them:
streaming runs need `metrics_url` (or a bare peer that refuses nothing).
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

from loadtest.wrk import LoadResult

GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
STREAM_PATH = "/inference.GRPCInferenceService/ModelStreamInfer"
# requests per streaming call (see the module docstring): a long-lived stream, not a call per request
STREAM_MESSAGES = 16


def infer_request(model: str, rows: Sequence[Sequence[float]], input_name: str = "X") -> bytes:
    """A serialized ModelInferRequest with one FP32 [rows, n] input sent as raw bytes."""
    from tritonclient.grpc import service_pb2 as pb

    matrix = np.asarray(rows, dtype="<f4")
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=input_name, datatype="FP32", shape=list(matrix.shape))
    request.raw_input_contents.append(matrix.tobytes())
    return request.SerializeToString()


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message (uncompressed)."""
    return struct.pack(">BI", 0, len(message)) + message


def check_rpc(target: str, message: bytes) -> None:
    """Send `message` once with grpcio and raise unless the RPC succeeds."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            stub.ModelInfer(pb.ModelInferRequest.FromString(message), timeout=10)
        except grpc.RpcError as exc:
            raise RuntimeError(f"gRPC ModelInfer to {target} failed: {exc.code().name}: {exc.details()}") from None


def check_stream(target: str, message: bytes, messages: int) -> None:
    """Send `messages` copies of `message` on one ModelStreamInfer call; raise unless all are answered."""
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc as pb_grpc

    request = pb.ModelInferRequest.FromString(message)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        try:
            answers = list(stub.ModelStreamInfer(iter([request] * messages), timeout=10))
        except grpc.RpcError as exc:
            raise RuntimeError(f"gRPC ModelStreamInfer to {target} failed: "
                               f"{exc.code().name}: {exc.details()}") from None
    failed = [a.error_message for a in answers if a.error_message]
    if len(answers) != messages or failed:
        raise RuntimeError(f"ModelStreamInfer to {target}: {len(answers)} answers to {messages} requests, "
                           f"errors {failed[:3]}")


def rejected_total(metrics_url: str) -> float:
    """Sum of vigil_rejected_requests_total across reasons, from a /metrics page."""
    import requests

    text = requests.get(metrics_url, timeout=5).text
    return sum(float(v) for v in re.findall(r"^vigil_rejected_requests_total\{[^}]*\} ([0-9.e+]+)$", text, re.M))


def parse(output: str, log_lines: list[str], concurrency: int, seconds: float) -> LoadResult:
    """Read h2load's summary and its per-request log (start µs, status, latency µs)."""
    rps = float(re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", output)[1])
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout", output)
    done, failed, errored, timeout = (int(counts[i]) for i in (3, 5, 6, 7))
    logged = [line.split("\t") for line in log_lines if line.count("\t") >= 2]
    # from the per-request log, not the summary's status counts: those are off by the calls
    # in flight when the duration ends, which the log lists with status 0 (cut off, not failed;
    # a call that really failed is in the summary's failed/errored counts)
    non2xx = sum(1 for fields in logged if fields[1] != "0" and not fields[1].startswith("2"))
    latencies = np.array([int(fields[2]) for fields in logged if fields[1] != "0"], dtype=float)
    p50, p99 = (np.percentile(latencies, [50, 99]) / 1000.0) if latencies.size else (0.0, 0.0)
    return LoadResult(concurrency, seconds, done, rps, float(p50), float(p99), failed + errored + timeout + non2xx)


def run_grpc_load(
    target: str, message: bytes, concurrency: int, seconds: float, cpu: int | None = 1,
    metrics_url: str | None = None, streams: int = 1,
) -> LoadResult:
    """Call ModelInfer with `message` from `concurrency` HTTP/2 connections for `seconds`.

    `target` is host:port. Each connection keeps `streams` RPCs in flight (1 = like wrk's
    one request per connection). h2load is pinned to `cpu` when taskset exists.
    """
    check_rpc(target, message)
    return _h2load(target, GRPC_PATH, frame(message), concurrency, streams, seconds, cpu, metrics_url, 1)


def run_grpc_stream_load(
    target: str, message: bytes, concurrency: int, seconds: float, cpu: int | None = 1,
    metrics_url: str | None = None, messages: int = STREAM_MESSAGES,
) -> LoadResult:
    """`concurrency` requests in flight as ModelStreamInfer calls of `messages` requests each."""
    messages = max(1, min(messages, concurrency))
    check_stream(target, message, messages)
    result = _h2load(target, STREAM_PATH, frame(message) * messages, max(1, concurrency // messages), 1, seconds,
                     cpu, metrics_url, messages)
    return LoadResult(concurrency, result.seconds, result.requests, result.rps, result.p50_ms, result.p99_ms,
                      result.errors)


def _h2load(target: str, path: str, body_bytes: bytes, connections: int, streams: int, seconds: float,
            cpu: int | None, metrics_url: str | None, messages: int) -> LoadResult:
    """Run h2load; `messages` gRPC messages per call scale its counts (errors too: a failed call loses all)."""
    h2load = shutil.which("h2load")
    if h2load is None:
        raise RuntimeError("h2load not found: apt-get install nghttp2-client")
    before = rejected_total(metrics_url) if metrics_url else 0.0
    with tempfile.TemporaryDirectory() as tmp:
        body, log = Path(tmp) / "body.bin", Path(tmp) / "requests.log"
        body.write_bytes(body_bytes)
        argv = [h2load, "-t1", f"-c{connections}", f"-m{streams}", f"-D{seconds:g}", "--warm-up-time=1",
                "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
                "--log-file", str(log), f"http://{target}{path}"]
        if cpu is not None and shutil.which("taskset"):
            argv = ["taskset", "-c", str(cpu), *argv]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 30)
        if proc.returncode != 0 or "req/s" not in proc.stdout:
            raise RuntimeError(f"h2load failed: {proc.stderr.strip() or proc.stdout.strip()}")
        lines = log.read_text().splitlines() if log.exists() else []
    result = parse(proc.stdout, lines, connections, seconds)
    rejected = int(rejected_total(metrics_url) - before) if metrics_url else 0
    return LoadResult(result.concurrency, result.seconds, result.requests * messages, result.rps * messages,
                      result.p50_ms, result.p99_ms, result.errors * messages + rejected)
