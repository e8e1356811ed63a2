"""Step 2: one overage charge put on Stripe (after the commit that created it; Stripe
only, then a short transaction). See the package docstring for where a charge goes.

The pieces, by use case: `billable` (the charge and its Stripe ids), `stripe_items` (its
lines as invoice items, on a draft or pending), `one_off_invoice` (an ended subscription's
invoice), `settling` (the charge and its billing-history row completed).
"""

from collections.abc import Sequence

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.models.subscription import ENDED_STATUSES
from app.stripe_gateway.client import StripeGateway
from app.subscriptions import service as subscriptions_service
from app.usage.overage_billing import repository
from app.usage.overage_billing.billable import load_billable
from app.usage.overage_billing.final_invoice import bill_pending_items_of_ended
from app.usage.overage_billing.one_off_invoice import one_off_invoice
from app.usage.overage_billing.refunds import hold_credit_for_refund
from app.usage.overage_billing.settling import settle
from app.usage.overage_billing.stripe_items import (
    add_pending_items,
    complete_on_invoice,
    ensure_monthly_pending_invoicing,
    find_items,
)

logger = structlog.get_logger(__name__)


class OverageNotBillable(Exception):
    """A charge that cannot be billed without an operator (left pending, alerted)."""


async def bill_charge(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    charge_id: int,
) -> str:
    """Put one charge on Stripe (see the module's docstring); returns its status. Safe to
    run any number of times, concurrently too: one run at a time per charge (the others
    answer "busy" and the sweeper comes back), what exists on Stripe is looked up first,
    every write carries a key from the charge's id, and the row is completed only once."""
    async with repository.charge_billing_lock(sessionmaker, charge_id) as held:
        if not held:
            return "busy"
        return await _bill_charge_locked(
            sessionmaker=sessionmaker, gateway=gateway, clock=clock, charge_id=charge_id
        )


async def _bill_charge_locked(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    charge_id: int,
) -> str:
    billable = await load_billable(sessionmaker, charge_id)
    if billable is None or billable.charge.status != "pending":
        return billable.charge.status if billable else "missing"
    if billable.stripe_customer_id is None:
        raise OverageNotBillable(f"charge {charge_id}: the customer has no Stripe customer")
    found = await find_items(gateway, billable)
    if billable.subscription_ended and billable.charge.amount < 0 and not found:
        return await hold_credit_for_refund(sessionmaker, billable, clock)
    target = billable.charge.stripe_invoice_id
    if target is not None:
        invoice = await complete_on_invoice(gateway, billable, target, found)
        if invoice is not None:
            return await settle(sessionmaker, gateway, billable, found, invoice, clock.now())
        # Finalized before the items got on it: they go where a charge without an invoice goes.
    if billable.subscription_ended and any(line.name not in found for line in billable.lines):
        target = await one_off_invoice(sessionmaker, gateway, billable, replacing=target)
        invoice = await complete_on_invoice(gateway, billable, target, found)
        if invoice is None:
            raise OverageNotBillable(
                f"charge {charge_id}: its invoice {target} was finalized without its items"
            )
        return await settle(sessionmaker, gateway, billable, found, invoice, clock.now())
    await add_pending_items(gateway, billable, found)
    if billable.yearly and billable.stripe_subscription_id is not None:
        await ensure_monthly_pending_invoicing(gateway, billable, clock.now())
    return await settle(sessionmaker, gateway, billable, found, None, clock.now())


async def bill_charges(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    charge_ids: Sequence[int],
) -> None:
    """Best effort, right after the commit that created the charges: a failure is logged and
    the charge stays pending for the sweeper."""
    for charge_id in charge_ids:
        try:
            await bill_charge(
                sessionmaker=sessionmaker, gateway=gateway, clock=clock, charge_id=charge_id
            )
        except Exception as error:
            logger.warning("overage_billing_deferred", charge_id=charge_id, error=repr(error))


async def bill_after_event(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    stripe_subscription_id: str | None,
) -> None:
    """Webhook processing calls this after an event's transaction committed: bill what the
    event closed (the pending charges of the subscription a renewal's `invoice.created`, or
    the subscription's deletion, is about) at once, while the renewal is still a draft."""
    if stripe_subscription_id is None:
        return
    async with sessionmaker() as session:
        subscription = await subscriptions_service.find_by_stripe_id(
            session, stripe_subscription_id, lock=False
        )
        charge_ids = (
            []
            if subscription is None
            else await repository.pending_charge_ids(session, subscription_id=subscription.id)
        )
    await bill_charges(
        sessionmaker=sessionmaker, gateway=gateway, clock=clock, charge_ids=charge_ids
    )
    if subscription is not None and subscription.status in ENDED_STATUSES:
        try:
            await bill_pending_items_of_ended(
                sessionmaker=sessionmaker,
                gateway=gateway,
                clock=clock,
                subscription_id=subscription.id,
            )
        except Exception as error:
            # The immediate cancel's job (or the next deletion event) does it again.
            logger.warning("overage_final_invoice_deferred", error=repr(error))
