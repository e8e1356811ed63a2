"""One handler per event type: what an event changes here. Each is idempotent (applying the
same object twice leaves the same state; notices and alerts are deduplicated by key) and runs
inside the processing transaction, under the object's watermark lock, with no Stripe call.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing_history import service as billing_history_service
from app.core.config import Settings
from app.core.metrics import FAILED_PAYMENT_ATTEMPTS
from app.customers import service as customers_service
from app.models import Customer, Subscription
from app.operator_alerts import service as operator_alerts_service
from app.payment_methods import service as payment_methods_service
from app.plans import service as plans_service
from app.stripe_gateway.parsing import (
    parse_charge,
    parse_checkout_session,
    parse_customer,
    parse_dispute,
    parse_invoice,
    parse_payment_method,
    parse_schedule,
    parse_setup_intent,
    parse_subscription,
)
from app.stripe_gateway.types import InvoiceState, PaymentMethodCard, SubscriptionState
from app.subscriptions import checkout, dunning, lifecycle_notices, payment_notices
from app.subscriptions import service as subscriptions_service
from app.usage import overage_billing

logger = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RelatedObjects:
    """What a handler needs beyond its event's object, read from Stripe before the
    transaction: for a setup intent, the card it set up and the customer's default card; for
    a failed invoice, its decline code."""

    payment_method: PaymentMethodCard | None = None
    default_payment_method_id: str | None = None
    # For a failed invoice: the decline code of its latest payment attempt.
    decline_code: str | None = None
    # For a completed checkout: the subscription it created, as Stripe holds it now.
    subscription: SubscriptionState | None = None


@dataclass(frozen=True, slots=True)
class EventContext:
    event_id: str
    event_type: str
    # The object to apply, as Stripe sent it (the payload's, or a fresh copy fetched from
    # Stripe): each handler parses it into our type.
    obj: dict[str, Any]
    # When Stripe created the event (what a refund row is dated by).
    occurred_at: datetime
    now: datetime
    related: RelatedObjects
    # The deployment's settings (the dunning schedule).
    settings: Settings


Handler = Callable[[AsyncSession, EventContext], Awaitable[None]]


# --- subscriptions ---------------------------------------------------------------------


async def _apply_subscription(
    session: AsyncSession, state: SubscriptionState, context: EventContext
) -> None:
    subscription = await subscriptions_service.find_for_stripe_state(session, state)
    if subscription is None:
        logger.info("webhook_subscription_not_ours", stripe_id=state.id)
        return
    await subscriptions_service.apply_state(
        session, subscription, state, observed_at=context.occurred_at, now=context.now
    )


async def subscription_changed(session: AsyncSession, context: EventContext) -> None:
    """created / updated / deleted: status, plan (from the price), periods (from the items),
    cancellation, trial end and the pending schedule, all as Stripe holds them."""
    await _apply_subscription(session, parse_subscription(context.obj), context)


async def subscription_deleted(session: AsyncSession, context: EventContext) -> None:
    """The subscription ended (at its period end, or canceled at once): its state, and the
    overage of every period not billed yet, closed now. No renewal invoice will come to carry
    it: processing bills it on a one-off invoice after this transaction
    (`app.usage.overage_billing`)."""
    state = parse_subscription(context.obj)
    await _apply_subscription(session, state, context)
    subscription = await subscriptions_service.find_by_stripe_id(session, state.id, lock=True)
    if subscription is not None:
        # No dunning retry after the end (the open invoice stays open, collected by nobody).
        await dunning.stop(session, subscription=subscription, now=context.now)
        await overage_billing.close_periods_on_cancel(
            session, subscription=subscription, now=context.now
        )


async def trial_will_end(session: AsyncSession, context: EventContext) -> None:
    """The trial reminder (the cron in `lifecycle_notices` writes the same one, under the
    same key, should this event never come)."""
    state = parse_subscription(context.obj)
    # Only read (whose trial it is): no lock.
    subscription = await subscriptions_service.find_for_stripe_state(session, state, lock=False)
    trial_end = state.trial_end
    # Stripe also sends this when a trial is ended early: remind only of a trial still ahead.
    if subscription is None or trial_end is None or trial_end <= context.now:
        return
    await lifecycle_notices.remind_trial_ending(
        session, subscription=subscription, trial_end=trial_end, now=context.now
    )


async def schedule_changed(session: AsyncSession, context: EventContext) -> None:
    """The pending plan change of manage/: phase two of an active schedule, or none."""
    schedule = parse_schedule(context.obj)
    if not schedule.subscription_id:
        return
    subscription = await subscriptions_service.find_by_stripe_id(
        session, schedule.subscription_id, lock=True
    )
    if subscription is not None:
        await subscriptions_service.apply_schedule(session, subscription, schedule)


async def checkout_completed(session: AsyncSession, context: EventContext) -> None:
    """The customer paid on a Checkout page: the subscription it created is the
    reservation's (see `app.subscriptions.checkout`)."""
    await checkout.record_completed_checkout(
        session,
        checkout=parse_checkout_session(context.obj),
        state=context.related.subscription,
        now=context.now,
    )


async def checkout_expired(session: AsyncSession, context: EventContext) -> None:
    await checkout.release_expired_checkout(
        session, checkout_session_id=parse_checkout_session(context.obj).id
    )


# --- invoices --------------------------------------------------------------------------


async def _record_invoice(
    session: AsyncSession, invoice: InvoiceState, context: EventContext
) -> tuple[Customer | None, Subscription | None]:
    customer = await customers_service.find_by_stripe_customer_id(session, invoice.customer_id)
    if customer is None:
        return None, None
    subscription = await subscriptions_service.find_by_stripe_id(
        session, invoice.subscription_id, lock=True
    )
    # Our own one-off invoice of an ended subscription's overage: the charge's `overage`
    # row already stands for it (and follows its status below); a row of its own would list
    # the same money twice.
    if not overage_billing.is_own_overage_invoice(invoice.metadata):
        add_on_prices = await plans_service.add_on_price_ids(session)
        await billing_history_service.record_invoice(
            session,
            invoice=invoice,
            customer_id=customer.id,
            subscription_id=subscription.id if subscription else None,
            add_on_price_ids=add_on_prices,
        )
    # The `overage` rows of the charges this invoice carries follow its status.
    await overage_billing.record_invoice_overage(
        session,
        invoice=invoice,
        customer_id=customer.id,
        subscription_id=subscription.id if subscription else None,
        now=context.now,
    )
    return customer, subscription


async def invoice_recorded(session: AsyncSession, context: EventContext) -> None:
    """invoice.finalized: the billing-history row."""
    await _record_invoice(session, parse_invoice(context.obj), context)


async def invoice_closed(session: AsyncSession, context: EventContext) -> None:
    """invoice.voided / invoice.marked_uncollectible: the billing-history row, and the end of
    a dunning of that invoice (nothing is owed on it any more)."""
    invoice = parse_invoice(context.obj)
    _, subscription = await _record_invoice(session, invoice, context)
    if subscription is not None and invoice.status in ("void", "uncollectible"):
        await dunning.close_written_off(
            session, subscription=subscription, stripe_invoice_id=invoice.id, now=context.now
        )


async def invoice_created(session: AsyncSession, context: EventContext) -> None:
    """invoice.created: the billing-history row, and, for a renewal (or a change that starts
    a new period), the usage periods it closes: their overage charges are written here and
    added to this draft by processing right after the commit (no Stripe call in a handler)."""
    invoice = parse_invoice(context.obj)
    _, subscription = await _record_invoice(session, invoice, context)
    if subscription is not None:
        await overage_billing.close_periods_for_invoice(
            session, subscription=subscription, invoice=invoice, now=context.now
        )


async def invoice_paid(session: AsyncSession, context: EventContext) -> None:
    """invoice.paid / invoice.payment_succeeded: history row, and the failed-attempt counter
    and grace period reset."""
    invoice = parse_invoice(context.obj)
    _, subscription = await _record_invoice(session, invoice, context)
    if subscription is None:
        return
    # A cycle change waiting for its payment (3-D Secure) took effect with this payment: the
    # usage periods before it close now (a renewal's closed at its `invoice.created`).
    await overage_billing.close_periods_for_invoice(
        session, subscription=subscription, invoice=invoice, now=context.now
    )
    # A late delivery for an older invoice must not clear the count of a newer one failing.
    newer_unpaid = await billing_history_service.has_newer_open_invoice(
        session,
        subscription_id=subscription.id,
        stripe_invoice_id=invoice.id,
        created=invoice.created,
    )
    if not newer_unpaid or subscription.dunning_invoice_id == invoice.id:
        # Paid by any means (our retry, the hosted page, another card): out of dunning.
        await dunning.recover(
            session, subscription=subscription, stripe_invoice_id=invoice.id, now=context.now
        )


async def invoice_payment_failed(session: AsyncSession, context: EventContext) -> None:
    """The attempt count is Stripe's (`attempt_count`), so a redelivery cannot count twice.
    A renewal's (plan change's, overage's) first failure starts dunning: past_due, a grace
    period, and the service's own retries (`app.subscriptions.dunning`)."""
    invoice = parse_invoice(context.obj)
    _, subscription = await _record_invoice(session, invoice, context)
    attempts = invoice.attempt_count
    # The invoice as applied may be paid by now (a late delivery settled from Stripe): only an
    # invoice still open counts against the customer.
    if invoice.status != "open":
        return
    if subscription is not None and attempts is not None:
        recorded_before = subscription.failed_payment_attempts
        subscriptions_service.record_failed_payment_attempts(subscription, attempts)
        # Only attempts new to us: a redelivery or a replay of the same attempt adds nothing.
        FAILED_PAYMENT_ATTEMPTS.inc(max(subscription.failed_payment_attempts - recorded_before, 0))
    if subscription is not None:
        await dunning.enter(
            session,
            subscription=subscription,
            invoice=invoice,
            decline_code=context.related.decline_code,
            failed_at=context.occurred_at,
            settings=context.settings,
            now=context.now,
        )


async def invoice_action_required(session: AsyncSession, context: EventContext) -> None:
    """The customer must authenticate (3-D Secure): a notice with the hosted invoice link.
    No retry: retrying without the customer does nothing."""
    invoice = parse_invoice(context.obj)
    customer, subscription = await _record_invoice(session, invoice, context)
    if customer is None:
        return
    if subscription is not None and subscription.dunning_invoice_id == invoice.id:
        # The dunned invoice needs the customer: off-session retries stop (and the notice
        # below is the one dunning would send, under the same key).
        await dunning.stop_for_customer_action(session, subscription=subscription, now=context.now)
    await payment_notices.send_payment_notice(
        session,
        customer_id=customer.id,
        subscription_id=subscription.id if subscription else None,
        kind="payment_action_required",
        dedupe_key=f"payment_action_required:{invoice.id}",
        payload={"invoice": invoice.id, "hosted_invoice_url": invoice.hosted_invoice_url},
        now=context.now,
    )


# --- payment methods -------------------------------------------------------------------


async def payment_method_attached(session: AsyncSession, context: EventContext) -> None:
    card = parse_payment_method(context.obj)
    customer = await customers_service.find_by_stripe_customer_id(session, card.customer_id)
    if customer is None:
        return
    await payment_methods_service.mirror_card(session, customer_id=customer.id, card=card)


async def payment_method_detached(session: AsyncSession, context: EventContext) -> None:
    await payment_methods_service.forget_card(
        session, stripe_payment_method_id=parse_payment_method(context.obj).id
    )


async def setup_intent_succeeded(session: AsyncSession, context: EventContext) -> None:
    """A card added through a SetupIntent: mirror it, and mirror Stripe's default card (set
    to this one beforehand when the customer had none: a first card must be chargeable)."""
    setup_intent = parse_setup_intent(context.obj)
    card = context.related.payment_method
    customer = await customers_service.find_by_stripe_customer_id(session, setup_intent.customer_id)
    if card is None or customer is None:
        return
    await payment_methods_service.mirror_card(session, customer_id=customer.id, card=card)
    stripe_default = context.related.default_payment_method_id
    if stripe_default:
        await payment_methods_service.mirror_default_card(
            session, customer_id=customer.id, stripe_payment_method_id=stripe_default
        )


# --- charges and customers -------------------------------------------------------------


async def charge_refunded(session: AsyncSession, context: EventContext) -> None:
    charge = parse_charge(context.obj)
    customer = await customers_service.find_by_stripe_customer_id(session, charge.customer_id)
    if customer is None:
        return
    await billing_history_service.record_charge_refunds(
        session, charge=charge, customer_id=customer.id, refunded_at=context.occurred_at
    )


async def dispute_created(session: AsyncSession, context: EventContext) -> None:
    dispute = parse_dispute(context.obj)
    charge_id = dispute.charge_id
    await operator_alerts_service.raise_alert(
        session,
        kind="charge_dispute",
        message=f"Charge {charge_id} disputed: {dispute.reason}",
        details={
            "dispute": dispute.id,
            "charge": charge_id,
            "amount": dispute.amount,
            "currency": dispute.currency,
            "reason": dispute.reason,
        },
        dedupe_key=f"dispute:{dispute.id}",
        now=context.now,
    )
    logger.warning("charge_disputed", dispute=dispute.id, charge=charge_id)


async def customer_deleted(session: AsyncSession, context: EventContext) -> None:
    await customers_service.record_stripe_customer_deleted(
        session, stripe_customer_id=parse_customer(context.obj).id, now=context.now
    )


HANDLERS: dict[str, Handler] = {
    "customer.subscription.created": subscription_changed,
    "customer.subscription.updated": subscription_changed,
    "customer.subscription.deleted": subscription_deleted,
    "customer.subscription.trial_will_end": trial_will_end,
    "checkout.session.completed": checkout_completed,
    "checkout.session.expired": checkout_expired,
    "subscription_schedule.updated": schedule_changed,
    "subscription_schedule.released": schedule_changed,
    "subscription_schedule.canceled": schedule_changed,
    "subscription_schedule.completed": schedule_changed,
    "invoice.created": invoice_created,
    "invoice.finalized": invoice_recorded,
    # The final action of dunning (or an operator on Stripe's dashboard) closing an invoice.
    "invoice.marked_uncollectible": invoice_closed,
    "invoice.voided": invoice_closed,
    "invoice.paid": invoice_paid,
    "invoice.payment_succeeded": invoice_paid,
    "invoice.payment_failed": invoice_payment_failed,
    "invoice.payment_action_required": invoice_action_required,
    "payment_method.attached": payment_method_attached,
    "payment_method.detached": payment_method_detached,
    "setup_intent.succeeded": setup_intent_succeeded,
    "charge.refunded": charge_refunded,
    "charge.dispute.created": dispute_created,
    "customer.deleted": customer_deleted,
}
