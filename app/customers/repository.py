from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer


async def get_by_dashboard_user_id(
    session: AsyncSession, dashboard_user_id: str
) -> Customer | None:
    return await session.scalar(
        select(Customer).where(Customer.dashboard_user_id == dashboard_user_id)
    )


async def insert_if_missing(
    session: AsyncSession, *, dashboard_user_id: str, email: str | None, name: str | None
) -> None:
    # ON CONFLICT DO NOTHING: two first calls of one user racing each other both succeed,
    # and the unique dashboard_user_id leaves exactly one row.
    await session.execute(
        insert(Customer)
        .values(dashboard_user_id=dashboard_user_id, email=email, name=name)
        .on_conflict_do_nothing(index_elements=[Customer.dashboard_user_id])
    )


async def get(session: AsyncSession, customer_id: int) -> Customer | None:
    return await session.get(Customer, customer_id)


async def set_stripe_customer_id_if_missing(
    session: AsyncSession, *, customer_id: int, stripe_customer_id: str
) -> str:
    """Record the Stripe customer unless another request recorded one first; returns the one
    that is recorded."""
    await session.execute(
        update(Customer)
        .where(Customer.id == customer_id, Customer.stripe_customer_id.is_(None))
        .values(stripe_customer_id=stripe_customer_id)
    )
    recorded = await session.scalar(
        select(Customer.stripe_customer_id).where(Customer.id == customer_id)
    )
    assert recorded is not None
    return recorded


async def update_details(
    session: AsyncSession, *, customer_id: int, email: str | None, name: str | None
) -> None:
    await session.execute(
        update(Customer).where(Customer.id == customer_id).values(email=email, name=name)
    )


async def get_by_stripe_customer_id(
    session: AsyncSession, stripe_customer_id: str
) -> Customer | None:
    return await session.scalar(
        select(Customer).where(Customer.stripe_customer_id == stripe_customer_id)
    )


async def mark_stripe_customer_deleted(
    session: AsyncSession, *, stripe_customer_id: str, deleted_at: datetime
) -> None:
    await session.execute(
        update(Customer)
        .where(
            Customer.stripe_customer_id == stripe_customer_id,
            Customer.stripe_customer_deleted_at.is_(None),
        )
        .values(stripe_customer_deleted_at=deleted_at)
    )


async def list_linked_to_stripe(session: AsyncSession) -> Sequence[Customer]:
    return (
        await session.scalars(
            select(Customer)
            .where(
                Customer.stripe_customer_id.is_not(None),
                Customer.stripe_customer_deleted_at.is_(None),
            )
            .order_by(Customer.id)
        )
    ).all()


async def stripe_customer_ids(session: AsyncSession, customer_ids: set[int]) -> dict[int, str]:
    rows = await session.execute(
        select(Customer.id, Customer.stripe_customer_id).where(
            Customer.id.in_(customer_ids), Customer.stripe_customer_id.is_not(None)
        )
    )
    return {customer_id: str(stripe_id) for customer_id, stripe_id in rows.all()}


async def list_by_email(session: AsyncSession, email: str) -> Sequence[Customer]:
    # Addresses are compared case-insensitively: Stripe keeps the case it was given.
    return (
        await session.scalars(select(Customer).where(func.lower(Customer.email) == email.lower()))
    ).all()
