"""Receiving a webhook: verify, store, enqueue, answer. Nothing here waits for a handler."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock
from app.stripe_gateway.client import InvalidWebhookSignature, verify_webhook
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
        await redis.enqueue_job(
            PROCESS_JOB,
            stripe_event_id,
            _job_id=job_id(stripe_event_id, attempt),
            _defer_by=defer,
        )
    except (RedisError, OSError, TimeoutError) as error:
        logger.warning("webhook_enqueue_failed", event_id=stripe_event_id, error=str(error))
        return False
    return True


def _event_row(event: dict[str, Any], received_at: datetime) -> dict[str, Any]:
    data_object = (event.get("data") or {}).get("object") or {}
    created = event.get("created")
    if not isinstance(created, int):
        raise InvalidWebhook("The event has no creation time.")
    return {
        "stripe_event_id": event["id"],
        "type": str(event.get("type") or "unknown")[:255],
        "api_version": event.get("api_version"),
        "livemode": bool(event.get("livemode")),
        "object_type": data_object.get("object"),
        "object_id": data_object.get("id"),
        "stripe_created_at": datetime.fromtimestamp(created, UTC),
        "payload": event,
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
        event = verify_webhook(payload, signature_header or "", secrets, clock.now())
    except InvalidWebhookSignature as error:
        raise InvalidWebhook(str(error)) from error
    row = _event_row(event, clock.now())
    if await repository.insert_event_if_new(session, row):
        return ReceivedEvent(event["id"], duplicate=False, needs_processing=True, attempts=0)
    stored = await repository.get_event(session, event["id"])
    assert stored is not None
    # A redelivery of an event we have not finished (pending, or failed for good): Stripe
    # retrying is a reason to try again. One already processed changes nothing.
    return ReceivedEvent(
        event["id"],
        duplicate=True,
        needs_processing=stored.status in ("pending", "failed"),
        attempts=stored.attempts,
    )
