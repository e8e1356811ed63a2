"""Running dunning's payment retries, and the sweeper that finds them (see
`app.subscriptions.dunning` for the rules): a retry is claimed in one transaction
(`running`, with the card it charges), paid on Stripe outside any transaction under the key
`dunning-retry:{invoice}:{attempt}`, and its outcome recorded in a second transaction. The
sweeper also turns Stripe's automatic collection off, suspends the exhausted and applies the
final action.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings
from app.core.metrics import PAYMENT_RETRIES
from app.models import PaymentRetry, Subscription
from app.models.subscription import ENDED_STATUSES
from app.payment_methods import service as payment_methods_service
from app.stripe_gateway.client import StripeGateway
from app.subscriptions import repository
from app.subscriptions.dunning import (
    iso_or_none,
    recover,
    request_retry,
    stop,
    stop_for_customer_action,
)
from app.subscriptions.errors import NotInDunning, PaymentRetryInProgress
from app.subscriptions.payment_notices import send_payment_notice
from app.subscriptions.stripe_state import apply_stripe_state

logger = structlog.get_logger(__name__)

# How long a claimed retry may run before the sweeper takes it for lost and runs it again.
RETRY_LEASE = timedelta(minutes=5)


async def retry_with_new_card(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    customer_id: int,
    only_if_default: str | None = None,
) -> str:
    """The customer has a new default card: if a payment of theirs is being dunned, retry it
    now with that card (a new attempt, its own key); returns what became of it.
    `only_if_default`: a card just added, retried with only if it is the default now."""
    async with sessionmaker.begin() as session:
        if only_if_default is not None:
            default = await payment_methods_service.default_card_id(
                session, customer_id=customer_id
            )
            if default != only_if_default:
                return "not_default"
        subscription = await repository.get_live_for_customer(session, customer_id, for_update=True)
        if subscription is None:
            return "not_in_dunning"
        try:
            retry_id = await request_retry(
                session, subscription=subscription, trigger="new_card", now=clock.now()
            )
        except (NotInDunning, PaymentRetryInProgress):
            # Nothing failing, or an attempt already under way: the new card waits for it.
            return "not_in_dunning"
    return await run_retry(
        sessionmaker=sessionmaker, gateway=gateway, clock=clock, retry_id=retry_id
    )


# --- running one retry -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Claimed:
    retry_id: int
    subscription_id: int
    stripe_invoice_id: str
    attempt: int
    payment_method_id: str | None
    idempotency_key: str


async def _claim(
    sessionmaker: async_sessionmaker[AsyncSession], retry_id: int, now: datetime
) -> _Claimed | str:
    async with sessionmaker.begin() as session:
        retry = await repository.get_payment_retry_for_update(session, retry_id)
        if retry is None:
            return "missing"
        if retry.status == "scheduled" and retry.due_at > now:
            return "not_due"
        if retry.status == "running" and retry.started_at and retry.started_at > now - RETRY_LEASE:
            return "busy"
        if retry.status not in ("scheduled", "running"):
            return retry.status
        subscription = await repository.get_for_update(session, retry.subscription_id)
        if (
            subscription.status in ENDED_STATUSES
            or subscription.dunning_invoice_id != retry.stripe_invoice_id
            or (subscription.dunning_action_required and retry.trigger == "schedule")
        ):
            retry.status, retry.finished_at = "canceled", now
            PAYMENT_RETRIES.labels(outcome="canceled").inc()
            return "canceled"
        if retry.status == "scheduled":
            retry.payment_method_id = await payment_methods_service.default_card_id(
                session, customer_id=subscription.customer_id
            )
            try:
                # The partial unique index: one attempt in flight per subscription.
                async with session.begin_nested():
                    retry.status, retry.started_at = "running", now
                    await session.flush()
            except IntegrityError:
                return "busy"
        else:
            retry.started_at = now  # a lost run taken over: same key, same card
        return _Claimed(
            retry.id,
            subscription.id,
            retry.stripe_invoice_id,
            retry.attempt,
            retry.payment_method_id,
            retry.idempotency_key,
        )


async def run_retry(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    retry_id: int,
) -> str:
    """Run one retry if it is due and still wanted; returns what became of it. A Stripe
    outage raises and leaves the row `running`, for the sweeper to run again."""
    claimed = await _claim(sessionmaker, retry_id, clock.now())
    if isinstance(claimed, str):
        return claimed
    collection = await gateway.collect_invoice(
        invoice_id=claimed.stripe_invoice_id,
        payment_method_id=claimed.payment_method_id,
        idempotency_key=claimed.idempotency_key,
    )
    now = clock.now()
    async with sessionmaker.begin() as session:
        retry = await repository.get_payment_retry_for_update(session, claimed.retry_id)
        subscription = await repository.get_for_update(session, claimed.subscription_id)
        assert retry is not None
        retry.finished_at = now
        PAYMENT_RETRIES.labels(outcome=collection.outcome).inc()
        if collection.outcome == "paid" or collection.invoice_status == "paid":
            retry.status = "succeeded" if collection.outcome == "paid" else "canceled"
            await recover(
                session,
                subscription=subscription,
                stripe_invoice_id=claimed.stripe_invoice_id,
                now=now,
            )
        elif collection.outcome == "not_open":
            retry.status = "canceled"
        elif collection.outcome == "action_required":
            retry.status = "action_required"
            await _ask_customer_to_act(session, subscription, collection.hosted_invoice_url, now)
        else:
            retry.status, retry.decline_code = "failed", collection.decline_code
            subscription.last_decline_code = collection.decline_code
            await _note_retry_failed(session, subscription, retry, now)
        return retry.status


async def _ask_customer_to_act(
    session: AsyncSession, subscription: Subscription, hosted_invoice_url: str | None, now: datetime
) -> None:
    invoice_id = subscription.dunning_invoice_id
    await stop_for_customer_action(session, subscription=subscription, now=now)
    # The same notice (and key) as `invoice.payment_action_required`: told once.
    await send_payment_notice(
        session,
        customer_id=subscription.customer_id,
        subscription_id=subscription.id,
        kind="payment_action_required",
        dedupe_key=f"payment_action_required:{invoice_id}",
        payload={"invoice": invoice_id, "hosted_invoice_url": hosted_invoice_url},
        now=now,
    )


async def _note_retry_failed(
    session: AsyncSession, subscription: Subscription, retry: PaymentRetry, now: datetime
) -> None:
    pending = await repository.pending_payment_retries(session, retry.stripe_invoice_id)
    subscription.next_payment_retry_at = pending[0].due_at if pending else None
    await send_payment_notice(
        session,
        customer_id=subscription.customer_id,
        subscription_id=subscription.id,
        sequence=retry.attempt,
        kind="payment_retry_failed",
        dedupe_key=f"payment_retry_failed:{retry.stripe_invoice_id}:{retry.attempt}",
        payload={
            "subscription_id": subscription.id,
            "invoice": retry.stripe_invoice_id,
            "attempt": retry.attempt,
            "decline_code": retry.decline_code,
            "next_payment_retry": iso_or_none(subscription.next_payment_retry_at),
        },
        now=now,
    )


# --- the sweeper -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepResult:
    due_retry_ids: list[int]
    suspended: int
    canceled: int


async def stop_automatic_collection(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    subscription_id: int,
    stripe_invoice_id: str,
) -> None:
    """Turn Stripe's own retries off for the dunned invoice, once (best effort: the sweeper
    tries again until it is done)."""
    await gateway.stop_automatic_collection(
        invoice_id=stripe_invoice_id,
        idempotency_key=f"dunning-auto-advance-off:{stripe_invoice_id}",
    )
    async with sessionmaker.begin() as session:
        subscription = await repository.get_for_update(session, subscription_id)
        if subscription.dunning_invoice_id == stripe_invoice_id:
            subscription.dunning_auto_advance_off = True


async def stop_automatic_collection_of_invoice(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    stripe_invoice_id: str | None,
) -> None:
    """After `invoice.payment_failed` committed: the same, if that invoice is now dunned."""
    if not stripe_invoice_id:
        return
    async with sessionmaker() as session:
        subscription = await repository.get_by_dunning_invoice(session, stripe_invoice_id)
    if subscription is None or subscription.dunning_auto_advance_off:
        return
    try:
        await stop_automatic_collection(
            sessionmaker=sessionmaker,
            gateway=gateway,
            subscription_id=subscription.id,
            stripe_invoice_id=stripe_invoice_id,
        )
    except Exception as error:  # the sweeper does it on its next run
        logger.warning(
            "dunning_auto_advance_off_failed", invoice=stripe_invoice_id, error=str(error)
        )


async def sweep(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    limit: int = 500,
) -> SweepResult:
    """Every minute: Stripe's automatic collection off where it is not yet, suspension of
    the exhausted, the final cancel when configured; returns the retries due, which the
    caller enqueues (the rows are the truth, the queue only a messenger)."""
    now = clock.now()
    async with sessionmaker() as session:
        in_dunning = list(await repository.list_in_dunning(session))
    for subscription in in_dunning:
        if not subscription.dunning_auto_advance_off and subscription.dunning_invoice_id:
            try:
                await stop_automatic_collection(
                    sessionmaker=sessionmaker,
                    gateway=gateway,
                    subscription_id=subscription.id,
                    stripe_invoice_id=subscription.dunning_invoice_id,
                )
            except Exception as error:  # next minute
                logger.warning("dunning_auto_advance_off_failed", error=str(error))
    suspended = 0
    async with sessionmaker.begin() as session:
        for subscription in in_dunning:
            if await _suspend_if_exhausted(session, subscription.id, now):
                suspended += 1
    canceled = 0
    if settings.DUNNING_FINAL_ACTION == "cancel":
        cancel_before = now - timedelta(days=settings.DUNNING_CANCEL_AFTER_DAYS)
        async with sessionmaker() as session:
            due_for_cancel = [
                subscription
                for subscription in await repository.list_in_dunning(session)
                if subscription.payment_overdue_at is not None
                and subscription.payment_overdue_at <= cancel_before
                and subscription.status not in ENDED_STATUSES
            ]
        for subscription in due_for_cancel:
            await _cancel_for_nonpayment(sessionmaker, gateway, clock, subscription)
            canceled += 1
    async with sessionmaker() as session:
        due = await repository.due_payment_retry_ids(
            session, now=now, stale_before=now - RETRY_LEASE, limit=limit
        )
    return SweepResult(due_retry_ids=due, suspended=suspended, canceled=canceled)


async def _suspend_if_exhausted(session: AsyncSession, subscription_id: int, now: datetime) -> bool:
    subscription = await repository.get_for_update(session, subscription_id)
    invoice_id = subscription.dunning_invoice_id
    if (
        invoice_id is None
        or subscription.payment_overdue_at is not None
        or subscription.status in ENDED_STATUSES
        or subscription.grace_period_ends_at is None
        or subscription.grace_period_ends_at > now
        or await repository.pending_payment_retries(session, invoice_id)
    ):
        return False
    subscription.payment_overdue_at = now
    subscription.next_payment_retry_at = None
    await send_payment_notice(
        session,
        customer_id=subscription.customer_id,
        subscription_id=subscription.id,
        kind="payment_overdue_suspended",
        dedupe_key=f"payment_overdue_suspended:{invoice_id}",
        payload={
            "subscription_id": subscription.id,
            "invoice": invoice_id,
            "failed_payment_attempts": subscription.failed_payment_attempts,
            "decline_code": subscription.last_decline_code,
        },
        now=now,
    )
    return True


async def _cancel_for_nonpayment(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    subscription: Subscription,
) -> None:
    """`DUNNING_FINAL_ACTION=cancel`: the open invoice marked uncollectible (the overage on
    it stays billed there, visible in billing history), then the subscription canceled on
    Stripe, each under a key of its own; then here."""
    invoice_id = subscription.dunning_invoice_id
    assert invoice_id is not None and subscription.stripe_subscription_id is not None
    invoice = await gateway.find_invoice(invoice_id)
    if invoice is not None and invoice.status == "open":
        await gateway.mark_invoice_uncollectible(
            invoice_id=invoice_id, idempotency_key=f"dunning-uncollectible:{invoice_id}"
        )
    state = await gateway.cancel_subscription_now(
        subscription_id=subscription.stripe_subscription_id,
        idempotency_key=f"dunning-cancel:{subscription.id}:{invoice_id}",
    )
    now = clock.now()
    async with sessionmaker.begin() as session:
        locked = await repository.get_for_update(session, subscription.id)
        await apply_stripe_state(session, locked, state, now=now)
        await stop(session, subscription=locked, now=now)
        await send_payment_notice(
            session,
            customer_id=locked.customer_id,
            subscription_id=locked.id,
            kind="canceled_for_nonpayment",
            dedupe_key=f"canceled_for_nonpayment:{invoice_id}",
            payload={"subscription_id": locked.id, "invoice": invoice_id},
            now=now,
        )
