from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AddOn, SubscriptionPlan


async def list_plans(session: AsyncSession, *, active_only: bool) -> Sequence[SubscriptionPlan]:
    query = select(SubscriptionPlan).order_by(SubscriptionPlan.sort_order, SubscriptionPlan.id)
    if active_only:
        query = query.where(SubscriptionPlan.is_active.is_(True))
    return (await session.scalars(query)).all()


async def get_plan(
    session: AsyncSession, plan_id: int, *, for_update: bool = False
) -> SubscriptionPlan | None:
    query = select(SubscriptionPlan).where(SubscriptionPlan.id == plan_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def get_plan_by_slug(session: AsyncSession, slug: str) -> SubscriptionPlan | None:
    return await session.scalar(select(SubscriptionPlan).where(SubscriptionPlan.slug == slug))


async def insert_if_missing(
    session: AsyncSession, model: type[SubscriptionPlan] | type[AddOn], values: dict[str, Any]
) -> bool:
    """Insert a catalog row unless one with its slug or name exists; True if inserted.

    ON CONFLICT DO NOTHING: two installs of the default catalog racing each other both
    finish, and the unique slug and name leave one row each.
    """
    result = await session.execute(
        insert(model).values(**values).on_conflict_do_nothing().returning(model.id)
    )
    return result.first() is not None


async def list_add_ons(session: AsyncSession, *, active_only: bool) -> Sequence[AddOn]:
    query = select(AddOn).order_by(AddOn.id)
    if active_only:
        query = query.where(AddOn.is_active.is_(True))
    return (await session.scalars(query)).all()


async def get_add_on(
    session: AsyncSession, add_on_id: int, *, for_update: bool = False
) -> AddOn | None:
    query = select(AddOn).where(AddOn.id == add_on_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def get_add_on_by_slug(session: AsyncSession, slug: str) -> AddOn | None:
    return await session.scalar(select(AddOn).where(AddOn.slug == slug))


async def plans_by_ids(session: AsyncSession, plan_ids: set[int]) -> dict[int, SubscriptionPlan]:
    plans = await session.scalars(select(SubscriptionPlan).where(SubscriptionPlan.id.in_(plan_ids)))
    return {plan.id: plan for plan in plans}


async def add_ons_by_ids(session: AsyncSession, add_on_ids: set[int]) -> dict[int, AddOn]:
    add_ons = await session.scalars(select(AddOn).where(AddOn.id.in_(add_on_ids)))
    return {add_on.id: add_on for add_on in add_ons}


async def plans_by_price_ids(
    session: AsyncSession, price_ids: set[str]
) -> dict[str, tuple[SubscriptionPlan, str]]:
    """Each known Stripe price id → (its plan, its billing cycle)."""
    plans = await session.scalars(
        select(SubscriptionPlan).where(
            SubscriptionPlan.stripe_monthly_price_id.in_(price_ids)
            | SubscriptionPlan.stripe_yearly_price_id.in_(price_ids)
        )
    )
    found: dict[str, tuple[SubscriptionPlan, str]] = {}
    for plan in plans:
        if plan.stripe_monthly_price_id in price_ids:
            found[plan.stripe_monthly_price_id] = (plan, "monthly")
        if plan.stripe_yearly_price_id in price_ids:
            found[plan.stripe_yearly_price_id] = (plan, "yearly")
    return found


async def add_ons_by_price_ids(session: AsyncSession, price_ids: set[str]) -> dict[str, AddOn]:
    add_ons = await session.scalars(
        select(AddOn).where(
            AddOn.stripe_monthly_price_id.in_(price_ids)
            | AddOn.stripe_yearly_price_id.in_(price_ids)
        )
    )
    found: dict[str, AddOn] = {}
    for add_on in add_ons:
        for price in (add_on.stripe_monthly_price_id, add_on.stripe_yearly_price_id):
            if price in price_ids:
                found[price] = add_on
    return found


async def add_on_price_ids(session: AsyncSession) -> set[str]:
    """Every Stripe price id of every add-on (monthly and yearly)."""
    rows = await session.execute(
        select(AddOn.stripe_monthly_price_id, AddOn.stripe_yearly_price_id)
    )
    return {price for pair in rows.all() for price in pair if price}
