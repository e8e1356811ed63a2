"""Posting webhook events the way Stripe does, and running the worker's step in-process."""

import json
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Subscription
from app.webhooks.processing import ProcessingResult, process_event
from app.webhooks.samples import signature_header
from tests.stripe.fake import FakeStripe

WEBHOOK = "/subscriptions/api/stripe-webhook/"
SECRET = "whsec_test"  # tests.conftest.make_settings


async def post_event(
    client: httpx.AsyncClient,
    event: dict[str, Any],
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    payload = json.dumps(event).encode()
    signed_at = timestamp if timestamp is not None else int(event["created"])
    return await client.post(
        WEBHOOK,
        content=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signature_header(payload, secret, signed_at),
        },
    )


async def run_worker(app: FastAPI, event_id: str, *, max_attempts: int = 3) -> ProcessingResult:
    return await process_event(
        sessionmaker=app.state.sessionmaker,
        gateway=app.state.stripe_gateway,
        clock=app.state.clock,
        stripe_event_id=event_id,
        max_attempts=max_attempts,
        settings=app.state.settings,
    )


async def deliver(
    client: httpx.AsyncClient, app: FastAPI, event: dict[str, Any], *, timestamp: int | None = None
) -> str:
    """Stripe posts the event (accepted) and the worker processes it: the outcome."""
    response = await post_event(client, event, timestamp=timestamp)
    assert response.status_code == 200, response.text
    return (await run_worker(app, event["id"])).outcome


def event_at(
    fake: FakeStripe, event_type: str, obj: dict[str, Any], created: int
) -> dict[str, Any]:
    event = fake.event(event_type, obj)
    event["created"] = created
    return event


async def local_subscription(session: AsyncSession) -> Subscription:
    """The one subscription row, as the database holds it now."""
    query = select(Subscription).execution_options(populate_existing=True)
    subscription = await session.scalar(query)
    assert subscription is not None
    return subscription


def schedule_payload(
    stripe_subscription: dict[str, Any],
    next_price_id: str | None,
    *,
    schedule_id: str = "sub_sched_1",
) -> dict[str, Any]:
    """An active subscription schedule that moves the subscription's plan item to
    `next_price_id` at the end of its current period."""
    item = stripe_subscription["items"]["data"][0]
    return {
        "id": schedule_id,
        "object": "subscription_schedule",
        "status": "active",
        "subscription": stripe_subscription["id"],
        "released_subscription": None,
        "phases": [
            {
                "start_date": item["current_period_start"],
                "end_date": item["current_period_end"],
                "items": [{"price": item["price"]["id"], "quantity": 1}],
            },
            {
                "start_date": item["current_period_end"],
                "end_date": None,
                "items": [{"price": next_price_id, "quantity": 1}],
            },
        ],
    }


def setup_intent_payload(customer_id: str, payment_method_id: str) -> dict[str, Any]:
    return {
        "id": "seti_1",
        "object": "setup_intent",
        "status": "succeeded",
        "customer": customer_id,
        "payment_method": payment_method_id,
    }
