"""Billing accounts: one per dashboard user, and the Stripe customer behind each."""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.auth import Principal
from app.customers import repository
from app.models import Customer
from app.stripe_gateway.client import StripeGateway


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


async def find_by_stripe_customer_id(
    session: AsyncSession, stripe_customer_id: str | None
) -> Customer | None:
    """Our account behind a Stripe customer, or None (not ours, or no id)."""
    if not stripe_customer_id:
        return None
    return await repository.get_by_stripe_customer_id(session, stripe_customer_id)


async def record_stripe_customer_deleted(
    session: AsyncSession, *, stripe_customer_id: str, now: datetime
) -> None:
    """The Stripe customer is gone (deleted on Stripe's dashboard): the account stays, marked
    once with when we learned it."""
    await repository.mark_stripe_customer_deleted(
        session, stripe_customer_id=stripe_customer_id, deleted_at=now
    )


async def ensure_stripe_customer(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    customer: Customer,
) -> str:
    """The account's Stripe customer id, finding or creating the Stripe customer first.

    Found only by our `dashboard_user_id` metadata, never by the token's email (which the
    user controls); the old module's customers are adopted by `billing import-stripe`. A new
    one is created with an idempotency key of our account id, so concurrent first calls of
    one user create one Stripe customer; the database keeps the first id recorded.
    """
    if customer.stripe_customer_id:
        return customer.stripe_customer_id
    stripe_customer_id = await gateway.find_customer(dashboard_user_id=customer.dashboard_user_id)
    if stripe_customer_id is None:
        stripe_customer_id = await gateway.create_customer(
            dashboard_user_id=customer.dashboard_user_id,
            email=customer.email,
            name=customer.name,
            idempotency_key=f"customer:{customer.id}",
        )
    async with sessionmaker.begin() as session:
        recorded = await repository.set_stripe_customer_id_if_missing(
            session, customer_id=customer.id, stripe_customer_id=stripe_customer_id
        )
    customer.stripe_customer_id = recorded
    return recorded


async def list_linked_to_stripe(session: AsyncSession) -> Sequence[Customer]:
    """Accounts with a Stripe customer that still exists (reconcile compares their cards)."""
    return await repository.list_linked_to_stripe(session)


async def stripe_customer_ids(session: AsyncSession, customer_ids: set[int]) -> dict[int, str]:
    """Each of these accounts' Stripe customer id, for those that have one."""
    return await repository.stripe_customer_ids(session, customer_ids)


async def list_by_email(session: AsyncSession, email: str) -> Sequence[Customer]:
    """The accounts with this email, whatever its case."""
    return await repository.list_by_email(session, email)


async def create_if_missing(
    session: AsyncSession, *, dashboard_user_id: str, email: str | None, name: str | None
) -> Customer:
    """The account of a dashboard user, created with these details if it does not exist."""
    await repository.insert_if_missing(
        session, dashboard_user_id=dashboard_user_id, email=email, name=name
    )
    customer = await repository.get_by_dashboard_user_id(session, dashboard_user_id)
    assert customer is not None
    return customer


async def link_stripe_customer(
    session: AsyncSession, *, customer_id: int, stripe_customer_id: str
) -> str:
    """Record the account's Stripe customer unless it has one; returns the one recorded.
    Raises IntegrityError when another account holds that Stripe customer."""
    return await repository.set_stripe_customer_id_if_missing(
        session, customer_id=customer_id, stripe_customer_id=stripe_customer_id
    )
