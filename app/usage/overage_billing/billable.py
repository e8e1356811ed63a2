"""A charge as the biller sees it: the charge, where its customer and subscription are on
Stripe, and the invoice lines it makes."""

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.customers import service as customers_service
from app.models import OverageCharge
from app.models.subscription import ENDED_STATUSES
from app.subscriptions import service as subscriptions_service
from app.usage.overage_billing import repository


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    amount: int
    description: str


@dataclass(frozen=True, slots=True)
class Billable:
    charge: OverageCharge
    customer_id: int
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    subscription_ended: bool
    yearly: bool

    @property
    def title(self) -> str:
        return "Overage" if self.charge.sequence == 0 else "Overage adjustment (late usage)"

    @property
    def period(self) -> str:
        return f"{self.charge.period_start:%Y-%m-%d} to {self.charge.period_end:%Y-%m-%d}"

    @property
    def lines(self) -> list[Line]:
        """The invoice items: minutes and agents, each as computed (no zero line)."""
        charge = self.charge
        minutes = f"{Decimal(charge.minutes_over).normalize():f}"
        candidates = [
            Line(
                "minutes",
                charge.minutes_amount,
                f"{self.title}: {minutes} call minutes, {self.period}",
            ),
            Line(
                "agents",
                charge.agents_amount,
                f"{self.title}: {charge.agents_over} agents, {self.period}",
            ),
        ]
        return [line for line in candidates if line.amount != 0]

    def metadata(self, line: str) -> dict[str, str]:
        return {
            "billing_type": "overage",
            "overage_charge_id": str(self.charge.id),
            "overage_line": line,
        }


async def load_billable(
    sessionmaker: async_sessionmaker[AsyncSession], charge_id: int
) -> Billable | None:
    """The charge with its subscription's and customer's Stripe ids; None for no such charge."""
    async with sessionmaker() as session:
        charge = await repository.get_charge(session, charge_id)
        if charge is None:
            return None
        subscription = await subscriptions_service.get_subscription(session, charge.subscription_id)
        customer = await customers_service.get(session, subscription.customer_id)
    if customer is None:
        return None
    return Billable(
        charge=charge,
        customer_id=customer.id,
        stripe_customer_id=customer.stripe_customer_id,
        stripe_subscription_id=subscription.stripe_subscription_id,
        subscription_ended=subscription.status in ENDED_STATUSES,
        yearly=subscription.billing_cycle == "yearly",
    )
