"""Operator suspension of an account: calls refused whatever the subscription's status says.

The flag is the customer's (`suspended_at`, `suspension_reason`), not one subscription's:
canceling and subscribing again does not lift it. The quota check reads it in its one
statement. Suspending changes nothing on Stripe: billing goes on, only access stops.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.customers import service as customers_service
from app.customers.errors import CustomerNotFound
from app.models import Customer, Subscription
from app.subscriptions import repository


@dataclass(frozen=True, slots=True)
class SuspensionState:
    customer: Customer
    # The live subscription, if any: what the suspension stops.
    subscription: Subscription | None


async def _state(session: AsyncSession, customer: Customer) -> SuspensionState:
    return SuspensionState(customer, await repository.get_live_for_customer(session, customer.id))


async def _customer(session: AsyncSession, dashboard_user_id: str) -> Customer:
    customer = await customers_service.get_by_dashboard_user_id(session, dashboard_user_id)
    if customer is None:
        raise CustomerNotFound()
    return customer


async def suspend(
    session: AsyncSession, *, dashboard_user_id: str, reason: str, now: datetime
) -> SuspensionState:
    """Suspend the account. Suspending again keeps the first time and takes the new reason
    (repeating the request is harmless)."""
    customer = await _customer(session, dashboard_user_id)
    customer.suspended_at = customer.suspended_at or now
    customer.suspension_reason = reason
    await session.flush()
    return await _state(session, customer)


async def lift(session: AsyncSession, *, dashboard_user_id: str) -> SuspensionState:
    """Lift a suspension (nothing to do when there is none)."""
    customer = await _customer(session, dashboard_user_id)
    customer.suspended_at = None
    customer.suspension_reason = None
    await session.flush()
    return await _state(session, customer)
