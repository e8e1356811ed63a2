"""The `overage` billing-history rows follow the invoice their charge is on."""

from collections.abc import Sequence
from datetime import datetime

import structlog
from sqlalchemy import (
    ColumnElement,
    SQLColumnExpression,
    case,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    BillingHistory,
    BillingHistoryArchive,
    OverageCharge,
    Subscription,
)
from app.stripe_gateway.types import InvoiceState
from app.usage.overage_billing import repository as overage_repository

logger = structlog.get_logger(__name__)


# How far an invoice has gone: draft, then open (finalized), then settled. An overage row's
# status is written from events and from the biller's own reads, in no guaranteed order, so
# it only ever moves forward (uncollectible may still become paid).
_STATUS_RANK = {"pending": 0, "draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}


def _forward_status(current: SQLColumnExpression[str], new: str) -> ColumnElement[str]:
    """`new`, unless the row's status is already further along."""
    current_rank = case(_STATUS_RANK, value=current, else_=0)
    return case((current_rank <= _STATUS_RANK.get(new, 0), literal(new)), else_=current)


async def record_invoice_overage(
    session: AsyncSession,
    *,
    invoice: InvoiceState,
    customer_id: int,
    subscription_id: int | None,
    now: datetime,
) -> None:
    """Keep the `overage` history rows of an invoice's charges in step with the invoice
    (handler, on every invoice event): a pending item that landed on this invoice links its
    charge to it, and each row takes the invoice's status, number and link."""
    invoice_id = invoice.id
    named = {
        charge_id
        for metadata in [invoice.metadata, *(line.metadata for line in invoice.lines)]
        if (charge_id := metadata.get("overage_charge_id")) is not None and charge_id.isdigit()
    }
    # Only the invoice's customer's charges: metadata names ids, and an id copied onto the
    # wrong customer's item must not link (or show) someone else's charge.
    customers_charges = select(OverageCharge.id).where(
        OverageCharge.id.in_({int(charge_id) for charge_id in named}),
        OverageCharge.subscription_id.in_(
            select(Subscription.id).where(Subscription.customer_id == customer_id)
        ),
    )
    charge_ids = set((await session.scalars(customers_charges)).all()) if named else set()
    if charge_ids:
        await session.execute(
            update(OverageCharge)
            .where(OverageCharge.id.in_(charge_ids), OverageCharge.status == "pending_next_invoice")
            .values(
                status="invoiced",
                stripe_invoice_id=invoice_id,
                invoiced_at=func.coalesce(OverageCharge.invoiced_at, now),
            )
        )
    # By indexed columns (the subscription's charges, or those the invoice names), never a
    # scan of every charge for each invoice event.
    ours: ColumnElement[bool] = OverageCharge.id.in_(charge_ids)
    if subscription_id is not None:
        ours = or_(ours, OverageCharge.subscription_id == subscription_id)
    elif not charge_ids:
        return
    # The hot table, then the archive (a replayed event of an old, settled invoice): in this
    # order, a row moved by an archive batch meanwhile is found by the second statement.
    for table in (BillingHistory, BillingHistoryArchive):
        await session.execute(
            update(table)
            .where(
                table.overage_charge_id.in_(
                    select(OverageCharge.id).where(
                        OverageCharge.stripe_invoice_id == invoice_id, ours
                    )
                )
            )
            .values(
                status=_forward_status(table.status, invoice.status or "draft"),
                stripe_invoice_id=invoice_id,
                number=func.coalesce(invoice.number, table.number),
                hosted_invoice_url=func.coalesce(
                    invoice.hosted_invoice_url, table.hosted_invoice_url
                ),
                invoice_pdf_url=func.coalesce(invoice.invoice_pdf_url, table.invoice_pdf_url),
                updated_at=func.now(),
            )
        )


async def overage_charges_by_id(
    session: AsyncSession, charge_ids: Sequence[int]
) -> Sequence[OverageCharge]:
    """The charges an invoice's overage lines name (their quantities and rates)."""
    return await overage_repository.list_charges(session, charge_ids)
