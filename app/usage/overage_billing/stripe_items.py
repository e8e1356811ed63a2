"""A charge's lines as Stripe invoice items: found again by their metadata, put on a draft
invoice, or left pending for the subscription's next invoice."""

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import InvoiceState
from app.usage.overage_billing.billable import Billable, Line

# A charge's items are looked for among the customer's items created since this long before
# the charge (clocks differ; the list stays short).
ITEM_LOOKBACK = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class StripeItem:
    id: str
    # The invoice holding it; None while it is pending.
    invoice_id: str | None


async def find_items(gateway: StripeGateway, billable: Billable) -> dict[str, StripeItem]:
    """The charge's items already on Stripe, by line, wherever they are (on an invoice or
    pending), found by the metadata we gave them: the customer's items created since shortly
    before the charge, one list, so no path creates a line another path already created."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    found = {}
    for item in await gateway.list_invoice_items(
        customer_id=billable.stripe_customer_id, created_from=charge.created_at - ITEM_LOOKBACK
    ):
        metadata = item.metadata
        if metadata.get("overage_charge_id") == str(charge.id) and metadata.get("overage_line"):
            found[metadata["overage_line"]] = StripeItem(item.id, item.invoice_id)
    return found


async def complete_on_invoice(
    gateway: StripeGateway, billable: Billable, invoice_id: str, found: dict[str, StripeItem]
) -> InvoiceState | None:
    """Put the charge's missing lines on this invoice while it is a draft (and finalize it
    when it is our one-off invoice); returns the invoice, or None when lines are missing and
    it no longer takes items."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    invoice = await gateway.find_invoice(invoice_id)
    if invoice is None:
        return None
    missing = [line for line in billable.lines if line.name not in found]
    is_draft = invoice.status == "draft"
    if missing and not is_draft:
        return None
    for line in missing:
        found[line.name] = await _create_item(
            gateway, billable, line, invoice_id=invoice_id, key=f"overage:{charge.id}:{line.name}"
        )
    if is_draft and invoice.metadata.get("overage_charge_id") == str(charge.id):
        # Our one-off invoice: finalized once it holds the items, so Stripe charges the
        # customer's default card.
        finalized = await gateway.finalize_invoice(
            invoice_id=invoice_id, idempotency_key=f"overage-finalize:{charge.id}"
        )
        invoice = dataclasses.replace(invoice, status=finalized.status)
    return invoice


async def add_pending_items(
    gateway: StripeGateway, billable: Billable, found: dict[str, StripeItem]
) -> None:
    """The charge's missing lines as pending items of the subscription: Stripe puts them on
    its next invoice. Keyed `...:next`: their parameters differ from an `invoice=` attempt's
    under the plain key, and Stripe refuses a key reused with other parameters."""
    for line in billable.lines:
        if line.name not in found:
            found[line.name] = await _create_item(
                gateway,
                billable,
                line,
                invoice_id=None,
                key=f"overage:{billable.charge.id}:{line.name}:next",
            )


async def _create_item(
    gateway: StripeGateway, billable: Billable, line: Line, *, invoice_id: str | None, key: str
) -> StripeItem:
    """One line of the charge as a Stripe invoice item: on `invoice_id`, or, without one,
    pending on the subscription (Stripe puts it on the next invoice)."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    item_id = await gateway.create_invoice_item(
        customer_id=billable.stripe_customer_id,
        amount=line.amount,
        currency=charge.currency,
        description=line.description,
        metadata=billable.metadata(line.name),
        period=(charge.period_start, charge.period_end),
        invoice_id=invoice_id,
        subscription_id=None if invoice_id else billable.stripe_subscription_id,
        idempotency_key=key,
    )
    return StripeItem(item_id, invoice_id)


async def ensure_monthly_pending_invoicing(
    gateway: StripeGateway, billable: Billable, now: datetime
) -> None:
    """A yearly subscription created before this service set `pending_invoice_item_interval`
    at creation, or switched to yearly later, gets it here, so its pending items are invoiced
    next month rather than at the yearly renewal."""
    assert billable.stripe_subscription_id is not None
    subscription = await gateway.find_subscription(billable.stripe_subscription_id)
    if subscription is None or subscription.pending_invoice_item_interval:
        return
    await gateway.update_subscription(
        subscription_id=billable.stripe_subscription_id,
        params={"pending_invoice_item_interval": {"interval": "month"}},
        # Per day: the same fix repeated later (after a switch away and back) is a new request.
        idempotency_key=f"pending-item-interval:{billable.charge.subscription_id}:{now:%Y%m%d}",
    )
