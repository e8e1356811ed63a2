"""A credit (a negative adjustment) of a subscription that has ended.

On a live subscription a credit is a negative pending item: Stripe takes it off the next
invoice. An ended subscription has no next invoice, and a negative invoice of its own would
become Stripe customer balance ("a negative invoice total is applied to the customer's
credit balance"), which a customer who left never uses. So nothing is sent to Stripe: the
charge becomes `refund_due`, and an operator is alerted (once per charge) with the amount
and the invoice the period was charged on, to refund it there. Refunding automatically is
left for later: it needs the payment of that invoice, which may itself have been refunded,
disputed or never paid.
"""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.operator_alerts import service as operator_alerts_service
from app.usage.overage_billing import repository
from app.usage.overage_billing.billable import Billable


async def hold_credit_for_refund(
    sessionmaker: async_sessionmaker[AsyncSession], billable: Billable, clock: Clock
) -> str:
    charge = billable.charge
    async with sessionmaker.begin() as session:
        locked = await repository.lock_charge(session, charge.id)
        if locked.status != "pending":
            return locked.status
        locked.status = "refund_due"
        charged_on = [
            other.stripe_invoice_id
            for other in await repository.period_charges(
                session, subscription_id=charge.subscription_id, period_start=charge.period_start
            )
            if other.amount > 0 and other.stripe_invoice_id is not None
        ]
        await operator_alerts_service.raise_alert(
            session,
            kind="overage_credit_to_refund",
            message=(
                f"Overage credit of {-charge.amount} {charge.currency} minor units for an "
                f"ended subscription ({billable.period}): refund it on the invoice it was "
                "charged on."
            ),
            details={
                "overage_charge_id": charge.id,
                "customer_id": billable.customer_id,
                "subscription_id": charge.subscription_id,
                "amount": charge.amount,
                "currency": charge.currency,
                "charged_on_invoice": charged_on[0] if charged_on else None,
            },
            dedupe_key=f"overage_credit_to_refund:{charge.id}",
            now=clock.now(),
        )
    return "refund_due"
