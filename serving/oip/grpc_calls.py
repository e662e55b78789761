"""One ModelInfer request's trip from a gRPC thread to the worker loop and back, without a coroutine.

The gRPC thread hands the request over with one `call_soon_threadsafe`; on the loop it is
admitted (token, in-flight limit), checked, decoded, validated and queued in the batcher in
one synchronous step; the batch result comes back through a callback on the batcher's
future, which fills the response and hands the call back: a plain lock released for
ModelInfer (its thread waits on it), the stream's queue for ModelStreamInfer. No Task, no
coroutine and no concurrent.futures.Future (a Condition and its waiter list) per call,
which is what the earlier coroutine bridge paid on every request.
"""

from __future__ import annotations

import collections
import functools
import logging
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from serving.errors import Overloaded, RequestError
from serving.oip.grpc_wire import decode_inputs, fill_response
from serving.oip.model import OipModel

if TYPE_CHECKING:
    import asyncio

    from serving.runtime import Runtime

log = logging.getLogger("bentoml.vigil")

# How long a gRPC thread waits for its answer at most: far above any request (the HTTP
# routes time out at 3 s), only reached when the worker's loop stopped under it.
WAIT_LIMIT_S = 60.0


class InferCall:
    """One request in flight: what came in, what goes back, and how the caller learns it is done."""

    __slots__ = ("request", "authorization", "response", "reply", "error", "on_done", "done", "start", "specs",
                 "rows", "bundle")

    def __init__(self, request: Any, authorization: Callable[[], str | None], response: Any, reply: Any = None,
                 on_done: Callable[[InferCall], None] | None = None) -> None:
        self.request, self.authorization, self.response = request, authorization, response
        self.reply = reply  # what the stream sends (the response sits inside it); None for ModelInfer
        self.error: BaseException | None = None  # a RequestError: refused (and counted); anything else: a bug
        if on_done is None:  # ModelInfer: the gRPC thread waits on the lock, the loop releases it
            self.done = threading.Lock()
            self.done.acquire()
            on_done = _release
        self.on_done = on_done

    def wait(self) -> None:
        """On the gRPC thread: block until the loop answered (ModelInfer calls only).

        Bounded, so a worker whose loop stopped mid-call cannot keep the thread forever."""
        if not self.done.acquire(timeout=WAIT_LIMIT_S):
            self.error = Overloaded("shutting_down", "the server is shutting down")


def _release(call: InferCall) -> None:
    call.done.release()


class Calls:
    """Starts calls on the loop and finishes them from the batcher's callbacks (loop thread only)."""

    def __init__(self, runtime: Runtime, oip: OipModel, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime, self.oip, self.loop = runtime, oip, loop
        self._inbox: collections.deque[InferCall] = collections.deque()
        self._scheduled = False

    def submit(self, call: InferCall) -> None:
        """From a gRPC thread: start `call` on the loop (the one hand-off in).

        Calls arriving while a drain is already scheduled ride along with it: one loop
        wake-up (a write to its self-pipe) per burst of calls, not one per call.
        """
        self._inbox.append(call)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        self._scheduled = False  # before popping: a call appended from now on schedules a new drain
        inbox, start = self._inbox, self.start
        while inbox:
            start(inbox.popleft())

    def start(self, call: InferCall) -> None:
        runtime, oip, request = self.runtime, self.oip, call.request
        call.start = time.perf_counter()
        try:
            # shares the worker's in-flight count with the HTTP routes
            runtime.admit("gRPC ModelInfer", call.authorization)
        except RequestError as error:
            self._end(call, error)
            return
        try:
            oip.check(request.model_name, request.model_version)
            parsed = oip.parse(decode_inputs(request), request.id)
            call.specs = oip.output_specs([o.name for o in request.outputs])
            future, call.bundle, _ = runtime.enqueue(parsed, "grpc")
        except BaseException as error:
            runtime.release()
            self._end(call, error)
            return
        call.rows = parsed.rows
        future.add_done_callback(functools.partial(self._finish, call))

    def _finish(self, call: InferCall, future: Any) -> None:
        runtime = self.runtime
        runtime.release()
        try:
            prediction = future.result()
            runtime.rows_answered(call.rows, call.bundle)
            outputs = self.oip.outputs_of(call.specs, prediction)
            fill_response(call.response, call.request, call.bundle.schema, outputs)
            runtime.answered(call.start, "grpc")
        except BaseException as error:
            self._end(call, error)
            return
        call.on_done(call)

    def _end(self, call: InferCall, error: BaseException) -> None:
        if isinstance(error, RequestError):
            self.runtime.refused(error)
        else:
            log.error("vigil: a gRPC inference request failed", exc_info=error)
        call.error = error
        call.on_done(call)
