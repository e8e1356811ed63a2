from app.core.auth import BillingAdmin
from app.core.db import SessionDep
from app.core.deps import ClockDep
from app.core.errors import Forbidden, Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.core.schemas import DashboardUserIdPath
from app.customers.errors import CustomerNotFound
from app.subscriptions import suspension
from app.subscriptions.schemas import SuspendRequest, SuspensionPublic

router = SlashTolerantRouter(
    prefix="/admin/customers",
    tags=["admin: subscriptions"],
    responses=error_responses(Unauthorized, Forbidden, CustomerNotFound),
)


def _public(state: suspension.SuspensionState) -> SuspensionPublic:
    customer, subscription = state.customer, state.subscription
    return SuspensionPublic(
        customer_id=customer.dashboard_user_id,
        subscription_id=subscription.id if subscription else None,
        status=subscription.status if subscription else None,
        suspended=customer.suspended_at is not None,
        suspended_at=customer.suspended_at,
        reason=customer.suspension_reason,
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
    customer_id: DashboardUserIdPath,
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
    session: SessionDep, _: BillingAdmin, customer_id: DashboardUserIdPath
) -> SuspensionPublic:
    return _public(await suspension.lift(session, dashboard_user_id=customer_id))
