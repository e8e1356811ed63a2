"""The test kit's Stripe fake served over HTTP, for the bench's mixed load.

`uvicorn bench.stripe_server:app`; the service under test points `STRIPE_API_BASE` here, so its
Stripe calls cross a real socket as they would to api.stripe.com, and the fake answers them
with the same rules (and refusals) as in the tests.
"""

import time

import httpx
from starlette.requests import Request
from starlette.responses import Response

from tests.stripe.fake import FakeStripe

fake = FakeStripe(now=int(time.time()))


async def app(scope: dict[str, object], receive: object, send: object) -> None:
    if scope["type"] != "http":
        return
    request = Request(scope, receive)  # type: ignore[arg-type]
    body = await request.body()
    answer = fake.handle(
        httpx.Request(request.method, str(request.url), headers=request.headers.raw, content=body)
    )
    response = Response(
        content=answer.content,
        status_code=answer.status_code,
        headers={
            name: value
            for name, value in answer.headers.items()
            if name.lower() not in ("content-length", "transfer-encoding")
        },
    )
    await response(scope, receive, send)  # type: ignore[arg-type]
