"""The `overage` billing-history rows follow the invoice their charge is on."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing_history import service as billing_history_service
from app.models import OverageCharge
from app.stripe_gateway.types import InvoiceState
from app.usage.overage_billing import repository


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
    named = {
        int(charge_id)
        for metadata in [invoice.metadata, *(line.metadata for line in invoice.lines)]
        if (charge_id := metadata.get("overage_charge_id")) is not None and charge_id.isdigit()
    }
    # Only the invoice's customer's charges: metadata names ids, and an id copied onto the
    # wrong customer's item must not link (or show) someone else's charge.
    charge_ids = await repository.customers_charge_ids(
        session, charge_ids=named, customer_id=customer_id
    )
    if charge_ids:
        await repository.link_charges_to_invoice(
            session, charge_ids=charge_ids, invoice_id=invoice.id, now=now
        )
    if subscription_id is None and not charge_ids:
        return
    on_invoice = await repository.charge_ids_on_invoice(
        session, invoice_id=invoice.id, charge_ids=charge_ids, subscription_id=subscription_id
    )
    await billing_history_service.update_overage_rows_from_invoice(
        session, overage_charge_ids=on_invoice, invoice=invoice
    )


async def overage_charges_by_id(
    session: AsyncSession, charge_ids: Sequence[int]
) -> Sequence[OverageCharge]:
    """The charges an invoice's overage lines name (their quantities and rates)."""
    return await repository.list_charges(session, charge_ids)
