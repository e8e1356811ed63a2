"""Stripe's webhook events: processing a stored one again, and sending a signed sample."""

import asyncio
import json
from typing import Annotated

import httpx
import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli.common import fail, with_stripe
from app.core.clock import SystemClock
from app.core.config import get_settings
from app.stripe_gateway.client import PINNED_API_VERSION, StripeGateway
from app.webhooks.admin_service import mark_for_replay
from app.webhooks.errors import WebhookEventNotFound
from app.webhooks.processing import ProcessingResult, process_event
from app.webhooks.samples import sample_event, signature_header

WEBHOOK_PATH = "/subscriptions/api/stripe-webhook"

webhooks_app = typer.Typer()


@webhooks_app.command("replay-webhook")
def replay_webhook(
    event_id: Annotated[str, typer.Argument(help="The Stripe event id, evt_...")],
) -> None:
    """Process a stored Stripe event again, here and now (after a fix, say)."""
    settings = get_settings()

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway
    ) -> ProcessingResult:
        clock = SystemClock()
        async with sessionmaker.begin() as session:
            await mark_for_replay(session, clock=clock, stripe_event_id=event_id)
        return await process_event(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            stripe_event_id=event_id,
            max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
            settings=settings,
        )

    try:
        result = asyncio.run(with_stripe(settings, work))
    except WebhookEventNotFound:
        fail(f"no stored event {event_id}", exit_code=1)
    typer.echo(f"{event_id}: {result.outcome} (attempt {result.attempts})")
    if result.outcome in ("retry", "failed"):
        raise typer.Exit(1)


@webhooks_app.command("test-webhook")
def test_webhook(
    event_type: Annotated[str, typer.Argument(help="e.g. invoice.paid")],
    url: Annotated[
        str | None, typer.Option(help="Default: this service's endpoint on HOST:PORT.")
    ] = None,
) -> None:
    """Send a correctly signed sample event (from Stripe's fixtures) to a running service."""
    settings = get_settings()
    secrets_list = settings.stripe_webhook_secrets
    if not secrets_list:
        fail("STRIPE_WEBHOOK_SECRET is not set", exit_code=2)
    now = int(SystemClock().now().timestamp())
    event = sample_event(event_type, api_version=PINNED_API_VERSION, created=now)
    payload = json.dumps(event).encode()
    target = url or f"http://{settings.HOST}:{settings.PORT}{WEBHOOK_PATH}/"
    response = httpx.post(
        target,
        content=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signature_header(payload, secrets_list[0], now),
        },
        timeout=10,
    )
    typer.echo(f"{event['id']} ({event_type}) -> {response.status_code} {response.text}")
    if response.status_code != 200:
        raise typer.Exit(1)
