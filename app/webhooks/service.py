"""Receiving a webhook: verify, store, enqueue, answer. Nothing here waits for a handler."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import StatementTarget
from app.jobs.enqueue import enqueue_job
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
    # The job to enqueue once the delivery is committed, by its attempt (see `job_id`); None
    # when nothing is to run.
    job_attempt: int | str | None


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
    sweeper enqueues what is still pending, so Redis being down loses nothing (a refused id,
    held by arq for an earlier job, is left to the sweeper too)."""
    return await enqueue_job(
        redis, PROCESS_JOB, stripe_event_id, job_id=job_id(stripe_event_id, attempt), defer=defer
    )


def _short_text(value: str | None, limit: int) -> str | None:
    return value if value is not None and 0 < len(value) <= limit else None


def event_row(event: StripeEventEnvelope, received_at: datetime) -> dict[str, Any]:
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


def verify_delivery(
    payload: bytes, *, signature_header: str | None, secrets: list[str], now: datetime
) -> dict[str, Any]:
    """The row to store for a delivery whose signature holds; 400 for anything else. Runs
    before any database work: an unsigned request costs no connection."""
    try:
        signed = verify_webhook(payload, signature_header or "", secrets, now)
    except InvalidWebhookSignature as error:
        raise InvalidWebhook(str(error)) from error
    signed_at = datetime.fromtimestamp(signed.signed_at, UTC)
    if b"\\u0000" in payload:
        # PostgreSQL's jsonb cannot hold a NUL character; no real Stripe event carries one.
        raise InvalidWebhook("The event contains a NUL character.")
    try:
        event = parse_event(signed.event)
    except NotAStripeEvent as error:
        # Signed but not shaped like an event: refused (400), never a 500.
        raise InvalidWebhook(str(error)) from error
    return event_row(event, now) | {"delivery_signed_at": signed_at}


async def store_new_delivery(target: StatementTarget, row: dict[str, Any]) -> ReceivedEvent | None:
    """Store a verified delivery (`verify_delivery`) of an event not stored before; None when
    it is stored already (then `record_repeated_delivery`). One statement, so the caller may
    autocommit it and send it again after a lost connection. The caller enqueues after the
    commit."""
    if not await repository.insert_event_if_new(target, row):
        return None
    logger.info("webhook_event_received", event_id=row["stripe_event_id"], type=row["type"])
    return ReceivedEvent(row["stripe_event_id"], duplicate=False, job_attempt=0)


async def record_repeated_delivery(
    transaction: StatementTarget, row: dict[str, Any], *, now: datetime
) -> ReceivedEvent:
    """A delivery of an event stored before, decided under the stored row's lock (so in a
    transaction): Stripe delivering again, or the same delivery replayed."""
    stored = await repository.lock_event_delivery(transaction, row["stripe_event_id"])
    assert stored is not None
    signed_at: datetime = row["delivery_signed_at"]
    # Stripe signs each delivery afresh, so only a later signature is Stripe delivering
    # again. The same signature is that delivery replayed (a retrying proxy, or someone who
    # captured it within the five minutes it is valid): acknowledged, and nothing runs.
    redelivered = stored.delivery_signed_at is None or signed_at > stored.delivery_signed_at
    if not redelivered:
        # Its first job's id again, for an event never attempted: arq refuses the id while it
        # holds that job or its result, so a replay runs nothing. It is enqueued when the
        # first answer was lost with its connection after the insert had committed, and the
        # insert, sent again, found its own row.
        never_attempted = stored.status == "pending" and stored.attempts == 0
        return ReceivedEvent(
            stored.stripe_event_id, duplicate=True, job_attempt=0 if never_attempted else None
        )
    # A failed event becomes pending and due again (see record_redelivery); a redelivery of an
    # event not finished yet runs again; one already processed changes nothing.
    status = await repository.record_redelivery(
        transaction, stored.stripe_event_id, signed_at=signed_at, now=now
    )
    return ReceivedEvent(
        stored.stripe_event_id,
        duplicate=True,
        # A job id of its own per redelivery, so it runs even while arq keeps the last one's.
        job_attempt=f"delivery{stored.attempts}" if status == "pending" else None,
    )


async def store_event_if_new(
    session: AsyncSession, event: StripeEventEnvelope, *, received_at: datetime
) -> bool:
    """Store an event the way a delivery is stored (for events caught up from Stripe's
    list); False when it is stored already."""
    return await repository.insert_event_if_new(session, event_row(event, received_at))


async def newest_stored_event_time(session: AsyncSession) -> datetime | None:
    """Stripe's `created` of the newest event stored."""
    return await repository.newest_created_at(session)


async def claim_watermark(
    session: AsyncSession, *, object_type: str, object_id: str, as_of: datetime
) -> bool:
    """Take an object's watermark to apply its state as Stripe held it at `as_of`.

    False, changing nothing, when state at least as recent was applied meanwhile. Otherwise
    the watermark moves to `as_of`, so an older event processed later re-fetches the object
    instead of undoing what is applied now.
    """
    watermark = await repository.lock_watermark(
        session, object_id=object_id, object_type=object_type
    )
    if watermark.applied_as_of is not None and watermark.applied_as_of >= as_of:
        return False
    watermark.applied_as_of = as_of
    return True
