from collections.abc import Sequence

from sqlalchemy import select
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
