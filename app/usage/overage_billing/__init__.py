"""Overage billing: usage periods closed into overage charges, and the charges put on Stripe.

Two steps, because a webhook handler runs in a transaction and must not call Stripe, and no
transaction is held open across a Stripe call (STYLE rule 2):

1. **Close** (database only, in the caller's transaction). The period's totals row is locked,
   its overage computed (`app.usage.overage`), an `OverageCharge` row inserted (unique per
   subscription, period and sequence, `ON CONFLICT DO NOTHING`) and the period marked billed
   (`overage_billed_at`). The row is the truth: once it is committed the charge is owed, and
   step 2 runs until it is done. Who closes what:
   - `invoice.created` of a subscription invoice that starts a new billing period
     (`subscription_cycle`, or `subscription_update` when a change restarts the cycle): the
     periods before that start. The charge names that invoice: Stripe leaves a renewal a
     draft for about an hour, and an item created without `invoice=` would wait for the
     *next* invoice, a period late.
   - `customer.subscription.deleted` (an immediate cancel sends it too): every period not
     billed yet. There is no next invoice, so these go on a one-off invoice.
   - `close_ended_usage_periods` (cron, in `app.usage.tasks`): a yearly subscription's
     monthly periods once ended (its renewal comes once a year), and any period nobody
     closed a day after it ended (an event never delivered): billed with the next invoice.
   - `bill_overage_adjustments` (cron): records that arrived after their period was billed
     become an adjustment charge (sequence 1, 2, ...), billed with the next invoice.
2. **Bill** (`bill_charge`, after the commit; Stripe only, then a short transaction). Right
   after the event's transaction (`bill_after_event`, called by webhook processing), and by
   the `sweep_overage_charges` cron for whatever is still `pending`. Where a charge goes:
   - it names an invoice that is still a draft: items with `invoice=` on it → `invoiced`;
   - that invoice is no longer a draft (finalized before we got there): pending items that
     Stripe puts on the subscription's next invoice → `pending_next_invoice`;
   - it names no invoice and the subscription lives: pending items likewise (a yearly
     subscription has `pending_invoice_item_interval` = month, so that is next month);
   - the subscription has ended: a one-off invoice (ours, marked `billing_type=overage`,
     taking none of the customer's other pending items), its items, then finalized so
     Stripe charges the default card → `invoiced`. Items left pending when a subscription
     ends (`pending_next_invoice`) would wait for a next invoice that never comes: they go
     on a final invoice (`final_invoice`), made by the immediate cancel's job and after the
     deletion event.
   Each item's idempotency key is `overage:{charge id}:{line}` (`...:next` for a pending
   item, whose parameters differ). Stripe forgets keys after 24 hours but retries webhooks
   for three days, so before creating anything the charge's items already on Stripe are
   looked up by their metadata (`overage_charge_id`): a retry a week later creates nothing
   twice. Once billed, the charge gets its billing-history row (`overage`, one per charge).
"""

from app.usage.overage_billing.closing import (
    close_periods_for_invoice,
    close_periods_on_cancel,
)
from app.usage.overage_billing.final_invoice import FINAL_INVOICE_METADATA
from app.usage.overage_billing.history import overage_charges_by_id, record_invoice_overage
from app.usage.overage_billing.invoicing import bill_after_event, bill_charge, bill_charges


def is_own_overage_invoice(metadata: dict[str, str]) -> bool:
    """An invoice of ours that holds only overage (an ended subscription's one-off or final
    invoice): the charges' `overage` rows stand for it."""
    return "overage_charge_id" in metadata or FINAL_INVOICE_METADATA in metadata


__all__ = [
    "bill_after_event",
    "bill_charge",
    "bill_charges",
    "close_periods_for_invoice",
    "close_periods_on_cancel",
    "is_own_overage_invoice",
    "overage_charges_by_id",
    "record_invoice_overage",
]
