"""`ModelStreamInfer`: the OIP v2 bidirectional stream, answered request by request.

One gRPC handler thread per stream writes the answers; a reader thread takes requests off
the stream and hands each to the worker loop at once (as ModelInfer does), so the requests of a stream (and of
every other stream and unary call) queue together and share batches instead of waiting
for one another. Answers go back in the order they finish, each with its request's `id`.

Same path and rules as ModelInfer (serving/oip/grpc_calls.py): the predict token (checked once
when the stream opens: without it the stream ends UNAUTHENTICATED), the worker's in-flight
limit, validation and message size. A refused request does not end the stream: it is
answered with `error_message` (and the stable reason in the `vigil-reason` parameter),
the way Triton reports per-request errors on a stream.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import grpc

from vigil import auth
from serving.errors import RequestError, Unauthorized
from serving.oip.grpc_calls import WAIT_LIMIT_S, Calls, InferCall
from serving.oip.grpc_wire import authorization, pb

log = logging.getLogger("bentoml.vigil")

# Requests of one stream in flight at once. Past it the reader stops reading, and HTTP/2
# flow control pushes back on the client instead of the stream growing the queue alone.
STREAM_WINDOW = 64
# The reader threads, reused across calls (a new thread per call cost ~5 % of a short
# stream's time). One per stream at most: grpcio's pool (GRPC_THREADS) bounds the streams.
_READERS = ThreadPoolExecutor(128, thread_name_prefix="vigil-grpc-stream")
_END = object()


def serve_stream(calls: Calls, requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    """The handler of one ModelStreamInfer call (runs on a gRPC thread, yields the answers)."""
    runtime = calls.runtime
    token = authorization(context)
    if runtime.predict_token is not None and not auth.check_bearer(token, runtime.predict_token):
        error = Unauthorized(auth.UNAUTHORIZED, auth.refusal("gRPC ModelStreamInfer"))
        runtime.refused(error)
        context.set_trailing_metadata((("vigil-reason", error.reason),))
        context.abort(grpc.StatusCode.UNAUTHENTICATED, error.message)
    answers: queue.SimpleQueue = queue.SimpleQueue()
    _READERS.submit(_read, calls, requests, answers, lambda: token)
    while (ready := answers.get()) is not _END:
        yield from ready


def _read(calls: Calls, requests: Iterator[Any], answers: queue.SimpleQueue, token: Any) -> None:
    window = threading.Semaphore(STREAM_WINDOW)
    pending: list[Any] = []  # answers ready in this loop turn (touched on the loop thread only)

    def flush() -> None:
        # one wake-up of the writer per loop turn, not one per answer: a batch's answers
        # to one stream are all ready in the same turn
        ready = pending.copy()
        pending.clear()
        answers.put(ready)

    def done(call: InferCall) -> None:  # on the loop thread, as each answer is ready
        error = call.error
        if not pending:
            calls.loop.call_soon(flush)
        if error is None:
            pending.append(call.reply)
        elif isinstance(error, RequestError):
            pending.append(_refusal(call.request, error.reason, error.message))
        else:  # logged by Calls
            pending.append(_refusal(call.request, "internal", "internal error while answering this request"))
        window.release()

    try:
        for request in requests:
            window.acquire()
            reply = pb.ModelStreamInferResponse()
            try:
                calls.submit(InferCall(request, token, reply.infer_response, reply, done))
            except RuntimeError:  # the loop is closed: the worker is stopping
                window.release()
                break
    except grpc.RpcError:
        pass  # the client went away or cancelled; answers still in flight are dropped
    except Exception:
        log.exception("vigil: reading a ModelStreamInfer stream failed")
    finally:
        for _ in range(STREAM_WINDOW):  # every answer handed out before the stream ends
            if not window.acquire(timeout=WAIT_LIMIT_S):
                break  # the loop stopped under us: end the stream instead of waiting forever
        try:
            calls.loop.call_soon_threadsafe(answers.put, _END)  # after the last flush (FIFO)
        except RuntimeError:  # the loop is closed: nothing is left to flush
            answers.put(_END)


def _refusal(request: Any, reason: str, message: str) -> Any:
    """The stream's answer to a request that got no result: its id, the message, the reason."""
    reply = pb.ModelStreamInferResponse(error_message=message)
    reply.infer_response.id = request.id
    reply.infer_response.model_name = request.model_name
    reply.infer_response.parameters["vigil-reason"].string_param = reason
    return reply
