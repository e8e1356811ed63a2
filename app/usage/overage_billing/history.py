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
    (handler, on every invoice event): the items of a charge that landed on this invoice move
    that much of its pending row onto its row of this invoice, a charge with nothing left
    pending is linked to it, and each row on it takes the invoice's status, number and link.
    A charge split between two invoices thus shows each part on its own invoice."""
    whole = _charge_ids(invoice.metadata.get("overage_charge_id"))
    lines: dict[int, set[str]] = {}
    for line in invoice.lines:
        for charge_id in _charge_ids(line.metadata.get("overage_charge_id")):
            lines.setdefault(charge_id, set()).add(line.metadata.get("overage_line", ""))
    # Only the invoice's customer's charges: metadata names ids, and an id copied onto the
    # wrong customer's item must not link (or show) someone else's charge.
    charge_ids = await repository.customers_charge_ids(
        session, charge_ids=whole | set(lines), customer_id=customer_id
    )
    if subscription_id is None and not charge_ids:
        return
    on_invoice = set(charge_ids) | set(
        await repository.charge_ids_on_invoice(
            session, invoice_id=invoice.id, charge_ids=charge_ids, subscription_id=subscription_id
        )
    )
    parts = {
        charge.id: None if charge.id in whole else _part_on_invoice(charge, lines.get(charge.id))
        for charge in await repository.list_charges(session, sorted(on_invoice))
    }
    settled = await billing_history_service.update_overage_rows_from_invoice(
        session, overage_parts=parts, invoice=invoice
    )
    if charge_ids & settled:
        await repository.link_charges_to_invoice(
            session, charge_ids=charge_ids & settled, invoice_id=invoice.id, now=now
        )


def _charge_ids(value: str | None) -> set[int]:
    return {int(value)} if value is not None and value.isdigit() else set()


def _part_on_invoice(charge: OverageCharge, names: set[str] | None) -> int | None:
    """The amount of the charge's items among these lines (None: all of them, or lines
    not shown, as on an invoice whose lines were cut to a first page)."""
    amounts = {"minutes": charge.minutes_amount, "agents": charge.agents_amount}
    billed = {name for name, amount in amounts.items() if amount != 0}
    if not names or billed <= names:
        return None
    return sum(amounts[name] for name in names & billed)


async def overage_charges_by_id(
    session: AsyncSession, charge_ids: Sequence[int]
) -> Sequence[OverageCharge]:
    """The charges an invoice's overage lines name (their quantities and rates)."""
    return await repository.list_charges(session, charge_ids)
