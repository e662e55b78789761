"""The ceiling: a bare Starlette app that parses the JSON body and returns a constant.

It runs on the same HTTP stack as Vigil (uvicorn with uvloop + httptools), so the ratio
Vigil / bare shows what Vigil's own plumbing costs on top of the stack.
"""

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

_REPLY = orjson.dumps({"predictions": [0]})


async def predict(request: Request) -> Response:
    orjson.loads(await request.body())
    return Response(_REPLY, media_type="application/json")


async def ready(request: Request) -> Response:
    return Response(b"ok")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])
