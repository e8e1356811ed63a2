"""Posting webhook events the way Stripe does, and running the worker's step in-process."""

import json
from typing import Any

import httpx
from fastapi import FastAPI

from app.webhooks.processing import ProcessingResult, process_event
from app.webhooks.samples import signature_header

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
    )
