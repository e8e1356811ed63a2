from typing import Annotated

from fastapi import Path

from app.core.auth import BillingAdmin
from app.core.db import SessionDep
from app.core.deps import ClockDep
from app.core.errors import Forbidden, Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.subscriptions import suspension
from app.subscriptions.errors import SubscriptionNotFound
from app.subscriptions.schemas import SuspendRequest, SuspensionPublic

router = SlashTolerantRouter(
    prefix="/admin/customers",
    tags=["admin: subscriptions"],
    responses=error_responses(Unauthorized, Forbidden, SubscriptionNotFound),
)

DashboardUserId = Annotated[str, Path(min_length=1, max_length=255)]


def _public(state: suspension.SuspensionState) -> SuspensionPublic:
    subscription = state.subscription
    return SuspensionPublic(
        customer_id=state.customer_id,
        subscription_id=subscription.id,
        status=subscription.status,
        suspended=subscription.suspended_at is not None,
        suspended_at=subscription.suspended_at,
        reason=subscription.suspension_reason,
    )


@router.post(
    "/{customer_id}/suspension/",
    response_model=SuspensionPublic,
    summary="Suspend a customer's access (calls refused; billing unchanged)",
)
async def suspend_customer(
    session: SessionDep,
    clock: ClockDep,
    _: BillingAdmin,
    customer_id: DashboardUserId,
    body: SuspendRequest,
) -> SuspensionPublic:
    state = await suspension.suspend(
        session, dashboard_user_id=customer_id, reason=body.reason, now=clock.now()
    )
    return _public(state)


@router.delete(
    "/{customer_id}/suspension/",
    response_model=SuspensionPublic,
    summary="Lift a customer's suspension",
)
async def lift_customer_suspension(
    session: SessionDep, _: BillingAdmin, customer_id: DashboardUserId
) -> SuspensionPublic:
    return _public(await suspension.lift(session, dashboard_user_id=customer_id))
