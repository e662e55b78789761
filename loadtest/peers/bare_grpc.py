"""The gRPC ceiling: a bare grpcio server answering OIP ModelInfer / ModelStreamInfer with a constant.

Same stack and knobs as Vigil's gRPC side (grpcio's sync server, a 128-thread pool,
SO_REUSEPORT, tritonclient's generated service), no model, no validation, no event loop:
Vigil's gRPC rows divided by this one show what Vigil's own per-call work costs on top of
grpcio itself. A tiny HTTP side answers the harness's readiness probe and answer check.

    python -m loadtest.peers.bare_grpc GRPC_PORT HTTP_PORT
"""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import grpc
import numpy as np
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

THREADS = 128  # as serving/oip/grpc_server.py


def constant_answer() -> Any:
    """What Vigil answers for one iris row: a label and three probabilities."""
    response = pb.ModelInferResponse(model_name="bare", model_version="1")
    response.outputs.add(name="label", datatype="INT64", shape=[1])
    response.outputs.add(name="probabilities", datatype="FP32", shape=[1, 3])
    response.raw_output_contents.extend([np.zeros(1, "<i8").tobytes(), np.zeros(3, "<f4").tobytes()])
    return response


class Bare(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self) -> None:
        self.answer = constant_answer()
        self.stream_answer = pb.ModelStreamInferResponse(infer_response=self.answer)

    def ServerReady(self, request: Any, context: Any) -> Any:
        return pb.ServerReadyResponse(ready=True)

    def ModelInfer(self, request: Any, context: Any) -> Any:
        return self.answer

    def ModelStreamInfer(self, requests: Iterator[Any], context: Any) -> Iterator[Any]:
        for _ in requests:
            yield self.stream_answer


class _Http(BaseHTTPRequestHandler):
    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # /readyz; /metrics is empty (no rejections to count)
        self._reply(b"ok" if self.path == "/readyz" else b"")

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._reply(b'{"predictions": [0]}')

    def log_message(self, *args: Any) -> None:
        pass


def main(grpc_port: int, http_port: int) -> None:
    server = grpc.server(ThreadPoolExecutor(THREADS), options=[("grpc.so_reuseport", 1)])
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(Bare(), server)
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    server.start()
    http = ThreadingHTTPServer(("127.0.0.1", http_port), _Http)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
