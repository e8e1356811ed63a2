"""The final invoice of an ended subscription: its overage items still waiting, pending, for
a next invoice that will never come (billed before the end, on a renewal that was finalized
first, or a monthly charge of a yearly subscription).

Stripe only puts a subscription's pending items on that subscription's invoices; once it has
ended there are none. So every charge of an ended subscription that is `pending_next_invoice`
goes on one invoice of Stripe's own making: `POST /v1/invoices` with `subscription=` and
`pending_invoice_items_behavior=include` (which "will only include pending invoice items for
that subscription"), finalized so the default card is charged. The charges' `overage` rows
then follow that invoice (`record_invoice_overage`, by the items' metadata), one row per
charge as before: the invoice gets no row of its own.

Idempotent: the invoice is created only while one of the charges' items is still pending
(looked up on Stripe first, so a retry after Stripe forgot the key creates nothing twice),
under the key `overage-final-invoice:{subscription id}`; a draft of ours found holding them
is finalized under `overage-final-finalize:{invoice id}`.
"""

from datetime import timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.customers import service as customers_service
from app.models.subscription import ENDED_STATUSES
from app.stripe_gateway.client import StripeGateway
from app.subscriptions import service as subscriptions_service
from app.usage.overage_billing import repository
from app.usage.overage_billing.history import record_invoice_overage

logger = structlog.get_logger(__name__)

# Marks our final invoice (its billing-history row is the charges' rows, not one of its own).
FINAL_INVOICE_METADATA = "overage_final_invoice_of"
ITEM_LOOKBACK = timedelta(days=1)


async def bill_pending_items_of_ended(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    subscription_id: int,
) -> str | None:
    """Put an ended subscription's waiting overage items on a final invoice; returns that
    invoice's id (None: nothing was waiting, or the subscription has not ended)."""
    async with sessionmaker() as session:
        subscription = await subscriptions_service.get_subscription(session, subscription_id)
        if subscription.status not in ENDED_STATUSES or not subscription.stripe_subscription_id:
            return None
        charges = await repository.charges_waiting_for_next_invoice(
            session, subscription_id=subscription_id
        )
        customer = await customers_service.get(session, subscription.customer_id)
    if not charges or customer is None or customer.stripe_customer_id is None:
        return None
    charge_ids = {str(charge.id) for charge in charges}
    items = [
        item
        for item in await gateway.list_invoice_items(
            customer_id=customer.stripe_customer_id,
            created_from=min(charge.created_at for charge in charges) - ITEM_LOOKBACK,
        )
        if item.metadata.get("overage_charge_id") in charge_ids
    ]
    holders = {item.invoice_id for item in items if item.invoice_id is not None}
    if any(item.invoice_id is None for item in items):
        holders.add(
            await gateway.create_invoice(
                customer_id=customer.stripe_customer_id,
                description="Overage not yet invoiced when the subscription ended",
                metadata={"billing_type": "overage", FINAL_INVOICE_METADATA: str(subscription_id)},
                idempotency_key=f"overage-final-invoice:{subscription_id}",
                pending_items_of_subscription=subscription.stripe_subscription_id,
            )
        )
    final_id = None
    for holder in sorted(holders):
        invoice = await gateway.find_invoice(holder)
        if invoice is None:
            continue
        if invoice.metadata.get(FINAL_INVOICE_METADATA) == str(subscription_id):
            final_id = holder
            if invoice.status == "draft":
                # Stripe answers the finalized invoice itself: no second read.
                invoice = await gateway.finalize_invoice(
                    invoice_id=holder, idempotency_key=f"overage-final-finalize:{holder}"
                )
        async with sessionmaker.begin() as session:
            # Links each charge whose items it holds, and its row follows the invoice.
            await record_invoice_overage(
                session,
                invoice=invoice,
                customer_id=customer.id,
                subscription_id=subscription_id,
                now=clock.now(),
            )
    logger.info("overage_final_invoice", subscription_id=subscription_id, invoice=final_id)
    return final_id
