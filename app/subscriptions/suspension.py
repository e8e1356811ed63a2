"""Operator suspension: calls refused whatever the subscription's status says.

The flag lives on the subscription (`suspended_at`, `suspension_reason`); the quota check
reads it in its one statement. Dunning sets the same flag once retries and grace are
exhausted. Suspending changes nothing on Stripe: billing goes on, only access stops.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.customers import service as customers_service
from app.models import Subscription
from app.subscriptions import repository
from app.subscriptions.errors import SubscriptionNotFound


@dataclass(frozen=True, slots=True)
class SuspensionState:
    customer_id: str
    subscription: Subscription


async def _subscription_of(session: AsyncSession, dashboard_user_id: str) -> Subscription:
    customer = await customers_service.get_by_dashboard_user_id(session, dashboard_user_id)
    if customer is None:
        raise SubscriptionNotFound()
    subscription = await repository.get_live_for_customer(session, customer.id, for_update=True)
    if subscription is None or subscription.status == "pending":
        raise SubscriptionNotFound()
    return subscription


async def suspend(
    session: AsyncSession, *, dashboard_user_id: str, reason: str, now: datetime
) -> SuspensionState:
    """Suspend the customer's live subscription. Suspending again keeps the first time and
    takes the new reason (repeating the request is harmless)."""
    subscription = await _subscription_of(session, dashboard_user_id)
    subscription.suspended_at = subscription.suspended_at or now
    subscription.suspension_reason = reason
    await session.flush()
    return SuspensionState(dashboard_user_id, subscription)


async def lift(session: AsyncSession, *, dashboard_user_id: str) -> SuspensionState:
    """Lift a suspension (nothing to do when there is none)."""
    subscription = await _subscription_of(session, dashboard_user_id)
    subscription.suspended_at = None
    subscription.suspension_reason = None
    await session.flush()
    return SuspensionState(dashboard_user_id, subscription)
