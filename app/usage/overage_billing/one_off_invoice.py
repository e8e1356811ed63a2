"""The one-off invoice of an ended subscription's charge: there is no next invoice to take
its items."""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.stripe_gateway.client import StripeGateway
from app.usage.overage_billing import repository
from app.usage.overage_billing.billable import Billable


async def one_off_invoice(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    billable: Billable,
    *,
    replacing: str | None,
) -> str:
    """The draft invoice of an ended subscription's charge: created once (its key is the
    charge's), its id written on the charge before anything is added to it, so a retry
    finds it there."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    created = await gateway.create_invoice(
        customer_id=billable.stripe_customer_id,
        description=f"{billable.title}, {billable.period}",
        # `billing_type=overage` makes its billing-history row an `overage` one.
        metadata={"billing_type": "overage", "overage_charge_id": str(charge.id)},
        idempotency_key=f"overage-invoice:{charge.id}",
    )
    async with sessionmaker.begin() as session:
        stored = await repository.set_one_off_invoice(
            session, charge_id=charge.id, invoice_id=created, replacing=replacing
        )
    return stored or created
