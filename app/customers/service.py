from sqlalchemy.ext.asyncio import AsyncSession

from app.core.auth import Principal
from app.customers import repository
from app.models import Customer


async def ensure_customer(session: AsyncSession, *, principal: Principal) -> Customer:
    """The caller's billing account, created on the first call.

    The token's `email` and `name` claims, when present, keep the account's details current;
    a token without them leaves the stored details as they are.
    """
    customer = await repository.get_by_dashboard_user_id(session, principal.user_id)
    if customer is None:
        await repository.insert_if_missing(
            session,
            dashboard_user_id=principal.user_id,
            email=principal.email,
            name=principal.name,
        )
        customer = await repository.get_by_dashboard_user_id(session, principal.user_id)
        assert customer is not None
        return customer
    email = principal.email or customer.email
    name = principal.name or customer.name
    if (email, name) != (customer.email, customer.name):
        await repository.update_details(session, customer_id=customer.id, email=email, name=name)
        customer.email, customer.name = email, name
    return customer


async def get_by_dashboard_user_id(
    session: AsyncSession, dashboard_user_id: str
) -> Customer | None:
    """The customer the dashboard knows by this user id, if it ever used the service."""
    return await repository.get_by_dashboard_user_id(session, dashboard_user_id)


async def get(session: AsyncSession, customer_id: int) -> Customer | None:
    return await repository.get(session, customer_id)
