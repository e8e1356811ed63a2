"""Dunning: what follows a failed renewal, plan-change or overage invoice.

- **Entering** (`enter`, from `invoice.payment_failed`): the subscription is `past_due`, the
  attempt is counted (Stripe's `attempt_count`), the decline code kept, and a grace period
  runs `GRACE_PERIOD_DAYS` from the invoice's first failure; access is kept meanwhile. The
  first invoice of a subscription is not dunned: subscribe answers it (402 or
  `requires_action`).
- **One owner of retries**: Stripe's automatic collection is turned off for the invoice
  (`auto_advance=false`, right after the event's commit, else by the sweeper) and the
  service schedules `MAX_PAYMENT_RETRIES` retries of its own at `PAYMENT_RETRY_DELAYS` after
  the failure, as `payment_retries` rows. A retry is claimed in one transaction (`running`,
  with the card it charges), paid on Stripe with the key `dunning-retry:{invoice}:{attempt}`
  outside any transaction, and its outcome recorded in a second one. A worker that dies
  between the two leaves the row `running`; after `RETRY_LEASE` the sweeper runs it again
  with the same key and parameters, so Stripe answers with the first outcome: a retry is
  delayed by a crash or a Redis outage, never lost or doubled.
- **Recovery** (`recover`): the invoice paid by any means (a retry, the hosted page,
  `invoice.paid`): `active`, counter and grace cleared, retries still scheduled canceled,
  a payment-recovered notice. A new default card runs a retry at once. A retry that needs
  the customer (SCA) stops the off-session retries and sends them the hosted invoice link.
- **Exhaustion** (`sweep`): retries used up (or stopped for SCA) and grace over: access
  suspended (`payment_overdue_at`; `entitlements/` says `payment_overdue`; an operator's
  suspension is the customer's own flag and is never touched here), the customer told once.
  Then `DUNNING_FINAL_ACTION`: `suspend` stays so until paid; `cancel` marks the invoice
  uncollectible and cancels the subscription on Stripe `DUNNING_CANCEL_AFTER_DAYS` later.
- **Cancel during dunning**: an ended subscription's scheduled retries are canceled (and a
  retry finds it ended before it pays). The open invoice is left as it is on Stripe: open,
  with automatic collection off, so nothing charges it; the customer may still pay it on
  the hosted page, and the billing history shows it open.

Only one invoice is dunned at a time per subscription: the first to fail. Another failing
while it runs is counted (attempts) but waits for that one to be settled.

This module holds the state changes (called in the caller's transaction);
`payment_retries` runs the retries and the sweeper, `dunning_operators` what operators see.
"""

from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.models import PaymentRetry, Subscription
from app.models.subscription import ENDED_STATUSES
from app.stripe_gateway.types import InvoiceState
from app.subscriptions import repository
from app.subscriptions.errors import NotInDunning, PaymentRetryInProgress
from app.subscriptions.payment_notices import send_payment_notice

# The first invoice of a subscription: subscribe answers its failure, not dunning.
_NOT_DUNNED_REASONS = frozenset({"subscription_create"})


def is_dunned_invoice(invoice: InvoiceState) -> bool:
    return invoice.subscription_id is not None and invoice.billing_reason not in _NOT_DUNNED_REASONS


async def enter(
    session: AsyncSession,
    *,
    subscription: Subscription,
    invoice: InvoiceState,
    decline_code: str | None,
    failed_at: datetime,
    settings: Settings,
    now: datetime,
) -> None:
    """An open invoice of `subscription` failed (`invoice.payment_failed`, already counted).
    Idempotent: a redelivery or a later failure of the same invoice schedules nothing new."""
    if subscription.status in ENDED_STATUSES or not is_dunned_invoice(invoice):
        return
    if decline_code:
        subscription.last_decline_code = decline_code
    if subscription.dunning_invoice_id is not None:
        # Already dunning this invoice (our own retry failing reports here too), or another
        # one that is settled first.
        return
    subscription.status = "past_due"
    subscription.dunning_invoice_id = invoice.id
    subscription.dunning_action_required = False
    subscription.dunning_auto_advance_off = False
    subscription.payment_overdue_at = None
    subscription.grace_period_ends_at = failed_at + settings.grace_period
    offsets = settings.payment_retry_offsets
    for attempt, offset in enumerate(offsets, start=1):
        await repository.insert_payment_retry_if_new(
            session,
            {
                "subscription_id": subscription.id,
                "stripe_invoice_id": invoice.id,
                "attempt": attempt,
                "trigger": "schedule",
                "due_at": failed_at + offset,
                "created_at": now,
            },
        )
    subscription.next_payment_retry_at = failed_at + offsets[0] if offsets else None
    await send_payment_notice(
        session,
        customer_id=subscription.customer_id,
        subscription_id=subscription.id,
        kind="payment_failed",
        dedupe_key=f"payment_failed:{invoice.id}",
        payload={
            "subscription_id": subscription.id,
            "invoice": invoice.id,
            "amount_due": invoice.amount_due,
            "currency": invoice.currency,
            "decline_code": decline_code,
            "grace_period_end": subscription.grace_period_ends_at.isoformat(),
            "next_payment_retry": iso_or_none(subscription.next_payment_retry_at),
            "hosted_invoice_url": invoice.hosted_invoice_url,
        },
        now=now,
    )
    await session.flush()


async def recover(
    session: AsyncSession, *, subscription: Subscription, stripe_invoice_id: str, now: datetime
) -> None:
    """An invoice of the subscription was paid. Out of dunning when it is the dunned one
    (else only the counter and grace reset, as before dunning: a paid older invoice leaves
    a newer one's dunning alone)."""
    in_dunning = subscription.dunning_invoice_id is not None
    if in_dunning and subscription.dunning_invoice_id != stripe_invoice_id:
        return
    subscription.failed_payment_attempts = 0
    subscription.grace_period_ends_at = None
    if not in_dunning:
        return
    if subscription.status in ("past_due", "unpaid"):
        subscription.status = "active"
    _clear(subscription)
    await repository.cancel_scheduled_payment_retries(
        session, subscription_id=subscription.id, now=now
    )
    await send_payment_notice(
        session,
        customer_id=subscription.customer_id,
        subscription_id=subscription.id,
        kind="payment_recovered",
        dedupe_key=f"payment_recovered:{stripe_invoice_id}",
        payload={"subscription_id": subscription.id, "invoice": stripe_invoice_id},
        now=now,
    )
    await session.flush()


async def stop(session: AsyncSession, *, subscription: Subscription, now: datetime) -> None:
    """The subscription ended (canceled at once, or deleted on Stripe): no retry runs after.
    The open invoice stays open on Stripe with its automatic collection off."""
    if subscription.dunning_invoice_id is None:
        return
    await repository.cancel_scheduled_payment_retries(
        session, subscription_id=subscription.id, now=now
    )
    _clear(subscription)
    await session.flush()


async def close_written_off(
    session: AsyncSession, *, subscription: Subscription, stripe_invoice_id: str, now: datetime
) -> None:
    """The dunned invoice was voided or marked uncollectible (on Stripe's dashboard, or by
    the final action): nothing is owed on it any more, so dunning ends without a retry.
    The status follows Stripe's `customer.subscription.updated`."""
    if subscription.dunning_invoice_id != stripe_invoice_id:
        return
    await repository.cancel_scheduled_payment_retries(
        session, subscription_id=subscription.id, now=now
    )
    _clear(subscription)
    await session.flush()


def _clear(subscription: Subscription) -> None:
    subscription.dunning_invoice_id = None
    subscription.last_decline_code = None
    subscription.next_payment_retry_at = None
    subscription.dunning_action_required = False
    subscription.dunning_auto_advance_off = False
    subscription.payment_overdue_at = None
    subscription.failed_payment_attempts = 0
    subscription.grace_period_ends_at = None


def iso_or_none(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


# --- a retry now: an operator's, or a new default card's -------------------------------


async def request_retry(
    session: AsyncSession, *, subscription: Subscription, trigger: str, now: datetime
) -> int:
    """Add an attempt due now to the subscription's dunning; returns the retry's id.
    409 `not_in_dunning` when there is no failed invoice to retry, 409
    `payment_retry_in_progress` while another attempt is under way."""
    invoice_id = subscription.dunning_invoice_id
    if invoice_id is None or subscription.status in ENDED_STATUSES:
        raise NotInDunning()
    if await repository.has_payment_retry_in_flight(session, subscription.id):
        raise PaymentRetryInProgress()
    attempt = await repository.last_payment_retry_attempt(session, invoice_id) + 1
    retry = PaymentRetry(
        subscription_id=subscription.id,
        stripe_invoice_id=invoice_id,
        attempt=attempt,
        trigger=trigger,
        due_at=now,
        status="scheduled",
        created_at=now,
    )
    try:
        # The attempt number is unique per invoice: of two requests racing for it, one wins
        # and the other is told an attempt is under way.
        async with session.begin_nested():
            session.add(retry)
            await session.flush()
    except IntegrityError:
        raise PaymentRetryInProgress() from None
    # A customer asked to act (SCA) gave a new card or an operator retries: back to retrying.
    subscription.dunning_action_required = False
    await session.flush()
    return retry.id


async def stop_for_customer_action(
    session: AsyncSession, *, subscription: Subscription, now: datetime
) -> None:
    """The bank wants the customer to authenticate (SCA): retrying without them does
    nothing, so the scheduled retries stop; their payment (or a new card) recovers."""
    subscription.dunning_action_required = True
    subscription.next_payment_retry_at = None
    await repository.cancel_scheduled_payment_retries(
        session, subscription_id=subscription.id, now=now
    )
