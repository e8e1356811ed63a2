"""The test kit's Stripe fake served over HTTP: for the bench's mixed load, and for
`billing dev` (`make run`) when no STRIPE_SECRET_KEY is set.

`uvicorn tests.stripe.http_server:app`; the service points `STRIPE_API_BASE` here, so its
Stripe calls cross a real socket as they would to api.stripe.com, and the fake answers them
with the same rules (and refusals) as in the tests. Its state lives as long as the process.
"""

import time

import httpx
from starlette.requests import Request
from starlette.responses import Response
from stripe import params as stripe_params

from tests.stripe.fake import FakeStripe
from tests.stripe.wire import Params, StripeObject, list_object

fake = FakeStripe(now=int(time.time()))


def _list_events(params: Params) -> StripeObject:
    # The fake sends no webhooks and keeps no event log: `billing reconcile` finds none to
    # catch up on, and compares the objects themselves.
    return list_object("/v1/events", [], params)


def _list_invoices(params: Params) -> StripeObject:
    newest_first = [
        invoice
        for invoice in reversed(fake.invoices.values())
        if invoice["customer"] == params.get("customer")
    ]
    after = params.get("starting_after")
    if after:
        ids = [invoice["id"] for invoice in newest_first]
        newest_first = newest_first[ids.index(after) + 1 :]
    return list_object("/v1/invoices", newest_first, params)


fake.add_route("GET", r"/v1/events", stripe_params.EventListParams, _list_events)
fake.add_route("GET", r"/v1/invoices", stripe_params.InvoiceListParams, _list_invoices)


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
