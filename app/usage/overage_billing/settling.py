"""A charge completed from where its items ended up on Stripe: the charge row, and its one
`overage` billing-history row."""

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import service as billing_history_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import InvoiceState
from app.usage.overage_billing import repository
from app.usage.overage_billing.billable import Billable
from app.usage.overage_billing.history import record_invoice_overage
from app.usage.overage_billing.stripe_items import StripeItem

logger = structlog.get_logger(__name__)


async def settle(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    billable: Billable,
    found: dict[str, StripeItem],
    known: InvoiceState | None,
    now: datetime,
) -> str:
    """Complete the row from where its items are: all on one invoice → `invoiced` (with that
    invoice's status in the history row); otherwise they wait as pending items for the next
    invoice → `pending_next_invoice`, linked when that invoice's events arrive."""
    amounts = {line.name: line.amount for line in billable.lines}
    by_holder: dict[str | None, int] = {}
    for name, item in found.items():
        by_holder[item.invoice_id] = by_holder.get(item.invoice_id, 0) + amounts.get(name, 0)
    invoices: dict[str, InvoiceState] = {}
    for holder in sorted(h for h in by_holder if h is not None):
        invoices[holder] = (
            known
            if known is not None and known.id == holder
            else await gateway.find_invoice(holder)
        ) or InvoiceState(id=holder)
    # All on one invoice: `invoiced` there. Split (an invoice finalized between the items),
    # or waiting: `pending_next_invoice`, with a history row for each part.
    whole = next(iter(invoices.values())) if len(by_holder) == 1 and invoices else None
    status = await _mark_billed(
        sessionmaker,
        billable,
        "invoiced" if whole is not None else "pending_next_invoice",
        whole,
        {line: item.id for line, item in found.items()},
        [(invoices[h] if h is not None else None, amount) for h, amount in by_holder.items()],
        now,
    )
    for holder in invoices:
        await _catch_up_history_row(sessionmaker, gateway, billable, holder, now)
    return status


async def _catch_up_history_row(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    billable: Billable,
    invoice_id: str,
    now: datetime,
) -> None:
    """Read the invoice again once the charge's history row exists, and bring the row up to
    it. An event of that invoice processed while the row did not exist yet (the invoice
    finalized or paid meanwhile) found nothing to update; without this the row would show
    the status it was billed with until the next event. Statuses only move forward, so a
    late, older event cannot undo this. Best effort: the invoice's next event does the same."""
    try:
        invoice = await gateway.find_invoice(invoice_id)
    except Exception as error:
        logger.warning("overage_history_catch_up_failed", invoice=invoice_id, error=repr(error))
        return
    if invoice is None:
        return
    async with sessionmaker.begin() as session:
        await record_invoice_overage(
            session,
            invoice=invoice,
            customer_id=billable.customer_id,
            subscription_id=billable.charge.subscription_id,
            now=now,
        )


async def _mark_billed(
    sessionmaker: async_sessionmaker[AsyncSession],
    billable: Billable,
    status: str,
    invoice: InvoiceState | None,
    items: dict[str, str],
    parts: list[tuple[InvoiceState | None, int]],
    now: datetime,
) -> str:
    charge = billable.charge
    async with sessionmaker.begin() as session:
        locked = await repository.lock_charge(session, charge.id)
        if locked.status != "pending":
            return locked.status
        repository.complete_charge(
            locked,
            status=status,
            stripe_invoice_id=invoice.id if invoice else None,
            item_ids=items,
            invoiced_at=now,
        )
        await billing_history_service.record_overage_charge(
            session,
            overage_charge_id=charge.id,
            customer_id=billable.customer_id,
            subscription_id=charge.subscription_id,
            parts=parts or [(invoice, charge.amount)],
            currency=charge.currency,
            description=f"{billable.title}, {billable.period}",
            period_start=charge.period_start,
            period_end=charge.period_end,
            occurred_at=now,
        )
    logger.info(
        "overage_charge_billed",
        charge_id=charge.id,
        status=status,
        amount=charge.amount,
        invoice=invoice.id if invoice else None,
    )
    return status
