"""Receiving a webhook: verify, store, enqueue, answer. Nothing here waits for a handler."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock
from app.stripe_gateway.parsing import NotAStripeEvent, parse_event
from app.stripe_gateway.types import StripeEventEnvelope
from app.stripe_gateway.webhook_signature import InvalidWebhookSignature, verify_webhook
from app.webhooks import repository
from app.webhooks.errors import InvalidWebhook

logger = structlog.get_logger(__name__)

PROCESS_JOB = "process_stripe_event"


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    stripe_event_id: str
    duplicate: bool
    # Whether the worker should (re)process it: new, or a redelivery of one not done yet.
    needs_processing: bool
    attempts: int


def job_id(stripe_event_id: str, attempt: int | str) -> str:
    # One job id per attempt: arq refuses an id while it keeps that job's result, so a
    # retry or a replay under the same id would silently never run.
    return f"{stripe_event_id}:{attempt}"


async def enqueue_processing(
    redis: ArqRedis,
    stripe_event_id: str,
    *,
    attempt: int | str,
    defer: timedelta | None = None,
) -> bool:
    """Ask the worker to process an event. Failing is fine: the row is stored and the
    sweeper enqueues what is still pending, so Redis being down loses nothing."""
    try:
        job = await redis.enqueue_job(
            PROCESS_JOB,
            stripe_event_id,
            _job_id=job_id(stripe_event_id, attempt),
            _defer_by=defer,
        )
    except (RedisError, OSError, TimeoutError) as error:
        logger.warning("webhook_enqueue_failed", event_id=stripe_event_id, error=str(error))
        return False
    if job is None:
        # arq still holds a job (or its result) under this id: the sweeper tries another.
        logger.info("webhook_enqueue_refused", event_id=stripe_event_id, job_id=attempt)
        return False
    return True


def _short_text(value: str | None, limit: int) -> str | None:
    return value if value is not None and 0 < len(value) <= limit else None


def _event_row(event: StripeEventEnvelope, received_at: datetime) -> dict[str, Any]:
    """The stored row of a signed event; an id or type longer than its column is refused
    (400), never a 500."""
    event_id = _short_text(event.id, 255)
    event_type = _short_text(event.type, 255)
    if event_id is None or event_type is None:
        raise InvalidWebhook("The body is not a Stripe event.")
    return {
        "stripe_event_id": event_id,
        "type": event_type,
        "api_version": _short_text(event.api_version, 64),
        "livemode": event.livemode,
        "object_type": _short_text(event.object_type, 64),
        "object_id": _short_text(event.object_id, 255),
        "stripe_created_at": event.created,
        "payload": event.payload,
        "received_at": received_at,
    }


async def receive_event(
    session: AsyncSession,
    *,
    payload: bytes,
    signature_header: str | None,
    secrets: list[str],
    clock: Clock,
) -> ReceivedEvent:
    """Verify and store one delivery; the caller enqueues after the commit."""
    try:
        signed = verify_webhook(payload, signature_header or "", secrets, clock.now())
    except InvalidWebhookSignature as error:
        raise InvalidWebhook(str(error)) from error
    if b"\\u0000" in payload:
        # PostgreSQL's jsonb cannot hold a NUL character; no real Stripe event carries one.
        raise InvalidWebhook("The event contains a NUL character.")
    try:
        event = parse_event(signed)
    except NotAStripeEvent as error:
        # Signed but not shaped like an event: refused (400), never a 500.
        raise InvalidWebhook(str(error)) from error
    row = _event_row(event, clock.now())
    if await repository.insert_event_if_new(session, row):
        logger.info("webhook_event_received", event_id=row["stripe_event_id"], type=row["type"])
        return ReceivedEvent(
            row["stripe_event_id"], duplicate=False, needs_processing=True, attempts=0
        )
    stored = await repository.get_event(session, row["stripe_event_id"])
    assert stored is not None
    if stored.status == "failed":
        # Stripe retrying an event we gave up on is a reason to try again: make it pending and
        # due, so the sweeper runs it even if this enqueue is lost.
        stored.status = "pending"
        stored.next_attempt_at = clock.now()
    # A redelivery of an event not finished yet runs again; one already processed changes
    # nothing.
    return ReceivedEvent(
        stored.stripe_event_id,
        duplicate=True,
        needs_processing=stored.status == "pending",
        attempts=stored.attempts,
    )
