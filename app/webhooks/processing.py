"""Processing one stored event, exactly once in effect, in object order.

1. Claim the event row (`FOR UPDATE SKIP LOCKED`): of ten workers given the same event, one
   works and the others leave; a processed event is left alone.
2. Decide what to apply. The payload is used when the event is newer than the state already
   applied for its object (the watermark) and in our pinned API version. Otherwise (an old or
   tied `created`, which has one-second resolution, or another API version) the object is
   fetched afresh from Stripe and that is applied, stamped with the fetch time. The fetch
   happens outside any transaction.
3. Apply under the object's watermark lock, only if the watermark is still the one read in
   step 2 (compare and set); if another event of the object landed meanwhile, decide again.
   Events of one object apply one at a time, never with state older than what is applied,
   and no event's effect is dropped because another got there first.
4. A handler error is retried with exponential back-off; after the last attempt the event
   is `failed` with its error, until a redelivery or a replay runs it again.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings, get_settings
from app.customers import service as customers_service
from app.models import StripeEvent
from app.stripe_gateway.client import PINNED_API_VERSION, StripeGateway
from app.stripe_gateway.parsing import (
    event_object,
    parse_checkout_session,
    parse_invoice,
    parse_setup_intent,
    parse_subscription,
)
from app.subscriptions import dunning, payment_retries
from app.usage import overage_billing
from app.webhooks import repository
from app.webhooks.handlers import HANDLERS, EventContext, RelatedObjects

logger = structlog.get_logger(__name__)

Outcome = Literal["processed", "ignored", "skipped", "busy", "failed", "retry", "missing"]
# While one attempt runs, the sweeper leaves the event alone for this long.
ATTEMPT_LEASE = timedelta(minutes=5)
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=6)
# Times one event is re-decided when other events of its object keep landing meanwhile.
MAX_APPLY_ROUNDS = 5


@dataclass(frozen=True, slots=True)
class ProcessingResult:
    outcome: Outcome
    attempts: int = 0
    retry_in: timedelta | None = None


def backoff(attempt: int) -> timedelta:
    """30 s, 1 min, 2 min, ... doubling per attempt, at most six hours."""
    return min(BACKOFF_BASE * (1 << max(attempt - 1, 0)), BACKOFF_CAP)


@dataclass(frozen=True, slots=True)
class _Claimed:
    event_type: str
    object_type: str | None
    object_id: str | None
    created: datetime
    api_version: str | None
    payload_object: dict[str, Any] | None
    attempts: int


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession], stripe_event_id: str, now: datetime
) -> _Claimed | ProcessingResult:
    async with sessionmaker.begin() as session:
        event = await repository.claim_event(session, stripe_event_id)
        if event is None:
            exists = await repository.get_event(session, stripe_event_id)
            return ProcessingResult("busy" if exists else "missing")
        if event.status in ("processed", "ignored"):
            return ProcessingResult("skipped", event.attempts)
        if event.status == "pending" and event.next_attempt_at and event.next_attempt_at > now:
            # Another attempt holds the lease (or a retry waits for its back-off).
            return ProcessingResult("busy", event.attempts)
        if event.type not in HANDLERS:
            event.status = "ignored"
            event.processed_at = now
            return ProcessingResult("ignored", event.attempts)
        event.attempts += 1
        event.next_attempt_at = now + ATTEMPT_LEASE
        payload_object = event_object(event.payload)
        return _Claimed(
            event_type=event.type,
            object_type=event.object_type,
            object_id=event.object_id,
            created=event.stripe_created_at,
            api_version=event.api_version,
            payload_object=payload_object,
            attempts=event.attempts,
        )


async def _fresh_object(gateway: StripeGateway, claimed: _Claimed) -> dict[str, Any] | None:
    if claimed.object_type is None or claimed.object_id is None:
        return None
    return await gateway.retrieve_object(claimed.object_type, claimed.object_id)


async def _related_objects(
    gateway: StripeGateway, event_type: str, obj: dict[str, Any], event_id: str
) -> RelatedObjects:
    """What a handler needs beyond the event's object, fetched (or written) on Stripe before
    its transaction opens."""
    if event_type == "invoice.payment_failed":
        invoice = parse_invoice(obj)
        if invoice.status != "open" or not dunning.is_dunned_invoice(invoice):
            return RelatedObjects()
        # The decline code is on the payment, not the invoice (basil).
        outcome = await gateway.latest_payment_outcome(invoice_id=invoice.id)
        return RelatedObjects(decline_code=outcome.decline_code)
    if event_type == "checkout.session.completed":
        subscription_id = parse_checkout_session(obj).subscription_id
        if subscription_id is None:
            return RelatedObjects()
        return RelatedObjects(subscription=await gateway.retrieve_subscription(subscription_id))
    if event_type != "setup_intent.succeeded":
        return RelatedObjects()
    setup_intent = parse_setup_intent(obj)
    card = setup_intent.payment_method
    if card is None and setup_intent.payment_method_id is not None:
        card = await gateway.find_payment_method(setup_intent.payment_method_id)
    customer_id = setup_intent.customer_id
    if card is None or customer_id is None:
        return RelatedObjects()
    default = await gateway.default_payment_method_id(customer_id=customer_id)
    if default is None:
        # The customer's first card: make it the one invoices charge, on Stripe first.
        await gateway.set_default_payment_method(
            customer_id=customer_id,
            payment_method_id=card.id,
            idempotency_key=f"setup-intent-default:{event_id}",
        )
        default = card.id
    return RelatedObjects(payment_method=card, default_payment_method_id=default)


async def _after_commit(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    event_type: str,
    obj: dict[str, Any],
) -> None:
    """The Stripe writes an applied event leads to, made once its transaction committed (a
    handler cannot call Stripe): the overage charges a renewal or a cancellation closed go
    onto their invoice now, while a renewal is still a draft. Best effort: what fails here
    stays pending in the database for its sweeper, and the event counts as processed. A
    failed invoice now dunned gets Stripe's automatic collection turned off."""
    if event_type == "invoice.payment_failed":
        await payment_retries.stop_automatic_collection_of_invoice(
            sessionmaker=sessionmaker, gateway=gateway, stripe_invoice_id=parse_invoice(obj).id
        )
        return
    if event_type == "setup_intent.succeeded":
        await _retry_dunned_payment_with_new_card(sessionmaker, gateway, clock, obj)
        return
    if event_type == "invoice.created":
        closed_subscription_id = parse_invoice(obj).subscription_id
    elif event_type == "customer.subscription.deleted":
        closed_subscription_id = parse_subscription(obj).id
    else:
        return
    await overage_billing.bill_after_event(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        stripe_subscription_id=closed_subscription_id,
    )


async def _retry_dunned_payment_with_new_card(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    obj: dict[str, Any],
) -> None:
    """A card added with a SetupIntent (the dashboard's way to replace a failing card) that
    is the default now: a dunned payment of the customer is retried at once. Best effort:
    the scheduled retries still run should this fail."""
    setup_intent = parse_setup_intent(obj)
    stripe_customer_id, card_id = setup_intent.customer_id, setup_intent.payment_method_id
    if not stripe_customer_id or not card_id:
        return
    async with sessionmaker() as session:
        customer = await customers_service.find_by_stripe_customer_id(session, stripe_customer_id)
    if customer is None:
        return
    try:
        await payment_retries.retry_with_new_card(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            customer_id=customer.id,
            only_if_default=card_id,
        )
    except Exception as error:
        logger.warning("dunning_new_card_retry_failed", customer=customer.id, error=str(error))


async def _finish(
    sessionmaker: async_sessionmaker[AsyncSession],
    stripe_event_id: str,
    *,
    error: str | None,
    now: datetime,
    max_attempts: int,
) -> ProcessingResult:
    async with sessionmaker.begin() as session:
        event = await repository.get_event(session, stripe_event_id)
        assert event is not None
        if error is None:
            event.status = "processed"
            event.processed_at = now
            event.last_error = None
            event.next_attempt_at = None
            logger.info(
                "webhook_event_processed",
                event_id=stripe_event_id,
                type=event.type,
                attempt=event.attempts,
                lag_seconds=(now - event.received_at).total_seconds(),
            )
            return ProcessingResult("processed", event.attempts)
        event.last_error = error[:4000]
        if event.attempts >= max_attempts:
            event.status = "failed"
            event.next_attempt_at = None
            logger.error("webhook_event_failed", event_id=stripe_event_id, error=error)
            return ProcessingResult("failed", event.attempts)
        delay = backoff(event.attempts)
        event.next_attempt_at = now + delay
        logger.warning(
            "webhook_event_retry", event_id=stripe_event_id, attempt=event.attempts, error=error
        )
        return ProcessingResult("retry", event.attempts, delay)


class _WatermarkMoved(Exception):
    """Another event of the object was applied between our read and our lock."""


async def _apply(
    sessionmaker: async_sessionmaker[AsyncSession],
    stripe_event_id: str,
    claimed: _Claimed,
    obj: dict[str, Any],
    *,
    read_watermark: datetime | None,
    as_of: datetime,
    related: RelatedObjects,
    now: datetime,
    settings: Settings,
) -> None:
    """Apply `obj` if the object's watermark is still the one read before deciding (compare
    and set under the row lock); otherwise `_WatermarkMoved`, and the caller decides again."""
    async with sessionmaker.begin() as session:
        if claimed.object_id is not None:
            watermark = await repository.lock_watermark(
                session, object_id=claimed.object_id, object_type=claimed.object_type or "unknown"
            )
            if watermark.applied_as_of != read_watermark:
                raise _WatermarkMoved
            watermark.applied_as_of = as_of
            watermark.last_event_id = stripe_event_id
        context = EventContext(
            event_id=stripe_event_id,
            event_type=claimed.event_type,
            obj=obj,
            occurred_at=claimed.created,
            now=now,
            related=related,
            settings=settings,
        )
        await HANDLERS[claimed.event_type](session, context)


async def _read_watermark(
    sessionmaker: async_sessionmaker[AsyncSession], object_id: str | None
) -> datetime | None:
    if object_id is None:
        return None
    async with sessionmaker() as session:
        watermark = await repository.get_watermark(session, object_id)
    return watermark.applied_as_of if watermark else None


async def _process_claimed(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    stripe_event_id: str,
    claim: _Claimed,
    settings: Settings,
) -> None:
    for _ in range(MAX_APPLY_ROUNDS):
        read_watermark = await _read_watermark(sessionmaker, claim.object_id)
        payload_is_fresh = (
            claim.payload_object is not None
            and claim.api_version == PINNED_API_VERSION
            and (read_watermark is None or claim.created > read_watermark)
        )
        obj: dict[str, Any] | None = claim.payload_object
        as_of = claim.created
        if not payload_is_fresh:
            fetched = await _fresh_object(gateway, claim)
            if fetched is not None:
                # Stripe's current state is newer than anything applied so far: stamp it past
                # both the watermark and the event (our clock may lag Stripe's `created`).
                obj = fetched
                floor = max(claim.created, read_watermark or claim.created)
                as_of = max(clock.now(), floor + timedelta(microseconds=1))
            # An object Stripe no longer has (a deleted customer): the payload is all there is.
        if obj is None:
            return
        related = await _related_objects(gateway, claim.event_type, obj, stripe_event_id)
        try:
            await _apply(
                sessionmaker,
                stripe_event_id,
                claim,
                obj,
                read_watermark=read_watermark,
                as_of=as_of,
                related=related,
                now=clock.now(),
                settings=settings,
            )
        except _WatermarkMoved:
            continue
        await _after_commit(sessionmaker, gateway, clock, claim.event_type, obj)
        return
    raise RuntimeError("the object kept changing while this event was applied")


async def process_event(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    stripe_event_id: str,
    max_attempts: int,
    settings: Settings | None = None,
) -> ProcessingResult:
    """Process one stored event; safe to call any number of times, concurrently too.
    `settings`: the deployment's (read when not given), for the rules handlers apply."""
    claim = await _claim(sessionmaker, stripe_event_id, clock.now())
    if isinstance(claim, ProcessingResult):
        return claim
    error: str | None = None
    try:
        await _process_claimed(
            sessionmaker, gateway, clock, stripe_event_id, claim, settings or get_settings()
        )
    except Exception as exception:
        error = f"{type(exception).__name__}: {exception}"
    return await _finish(
        sessionmaker, stripe_event_id, error=error, now=clock.now(), max_attempts=max_attempts
    )


async def reset_for_replay(session: AsyncSession, event: StripeEvent, now: datetime) -> None:
    """Make a failed (or any) event run again: pending, due now, its attempts kept."""
    event.status = "pending"
    event.next_attempt_at = now
    event.processed_at = None
