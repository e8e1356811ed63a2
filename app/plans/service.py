"""Catalog rules: what the dashboard may show and what an admin may change."""

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import flush_unique
from app.models import AddOn, SubscriptionPlan
from app.plans import repository
from app.plans.errors import (
    AddOnExists,
    AddOnNotFound,
    CurrencyNotSupported,
    PlanExists,
    PlanNotFound,
)
from app.plans.schemas import AddOnCreate, AddOnUpdate, PlanCreate, PlanUpdate


@dataclass(frozen=True, slots=True)
class Catalog:
    plans: Sequence[SubscriptionPlan]
    add_ons: Sequence[AddOn]


def _checked_currency(requested: str | None, billing_currency: str) -> str:
    if requested is not None and requested != billing_currency:
        raise CurrencyNotSupported(
            f"This deployment bills in {billing_currency}; {requested} is not accepted.",
            details={"billing_currency": billing_currency},
        )
    return billing_currency


async def get_active_catalog(session: AsyncSession) -> Catalog:
    return Catalog(
        plans=await repository.list_plans(session, active_only=True),
        add_ons=await repository.list_add_ons(session, active_only=True),
    )


async def list_plans(session: AsyncSession) -> Sequence[SubscriptionPlan]:
    return await repository.list_plans(session, active_only=False)


async def get_plan_or_raise(
    session: AsyncSession, *, plan_id: int, active_only: bool
) -> SubscriptionPlan:
    plan = await repository.get_plan(session, plan_id)
    if plan is None or (active_only and not plan.is_active):
        raise PlanNotFound()
    return plan


async def create_plan(
    session: AsyncSession, *, plan_create: PlanCreate, billing_currency: str
) -> SubscriptionPlan:
    fields = plan_create.model_dump(exclude={"currency"})
    plan = SubscriptionPlan(
        **fields, currency=_checked_currency(plan_create.currency, billing_currency)
    )
    session.add(plan)
    await flush_unique(session, PlanExists())
    await session.refresh(plan)
    return plan


async def update_plan(
    session: AsyncSession, *, plan_id: int, plan_update: PlanUpdate
) -> SubscriptionPlan:
    """Change a plan in place. Subscriptions already on Stripe keep the price they were sold
    at: Stripe prices are immutable, and `billing create-stripe-products --force-update` moves
    new subscriptions to a changed amount."""
    plan = await repository.get_plan(session, plan_id, for_update=True)
    if plan is None:
        raise PlanNotFound()
    for name, value in plan_update.changes().items():
        setattr(plan, name, value)
    await flush_unique(session, PlanExists())
    await session.refresh(plan)
    return plan


async def deactivate_plan(session: AsyncSession, *, plan_id: int) -> SubscriptionPlan:
    """Hide a plan from new subscribers; existing subscriptions to it go on unchanged."""
    return await update_plan(session, plan_id=plan_id, plan_update=PlanUpdate(is_active=False))


async def list_add_ons(session: AsyncSession) -> Sequence[AddOn]:
    return await repository.list_add_ons(session, active_only=False)


async def create_add_on(
    session: AsyncSession, *, add_on_create: AddOnCreate, billing_currency: str
) -> AddOn:
    fields = add_on_create.model_dump(exclude={"currency"})
    add_on = AddOn(**fields, currency=_checked_currency(add_on_create.currency, billing_currency))
    session.add(add_on)
    await flush_unique(session, AddOnExists())
    await session.refresh(add_on)
    return add_on


async def update_add_on(
    session: AsyncSession, *, add_on_id: int, add_on_update: AddOnUpdate
) -> AddOn:
    add_on = await repository.get_add_on(session, add_on_id, for_update=True)
    if add_on is None:
        raise AddOnNotFound()
    for name, value in add_on_update.changes().items():
        setattr(add_on, name, value)
    await flush_unique(session, AddOnExists())
    await session.refresh(add_on)
    return add_on


async def deactivate_add_on(session: AsyncSession, *, add_on_id: int) -> AddOn:
    """Stop offering an add-on; subscriptions that carry it keep it."""
    return await update_add_on(
        session, add_on_id=add_on_id, add_on_update=AddOnUpdate(is_active=False)
    )


async def add_on_price_ids(session: AsyncSession) -> set[str]:
    """Every Stripe price id of every add-on (to tell add-on lines from plan lines)."""
    return await repository.add_on_price_ids(session)


# Reads for the domains built on the catalog (subscriptions, usage, Stripe sync).


async def find_plan(session: AsyncSession, plan_id: int) -> SubscriptionPlan | None:
    return await repository.get_plan(session, plan_id)


async def find_plan_by_slug(session: AsyncSession, slug: str) -> SubscriptionPlan | None:
    return await repository.get_plan_by_slug(session, slug)


async def find_add_on(session: AsyncSession, add_on_id: int) -> AddOn | None:
    return await repository.get_add_on(session, add_on_id)


async def plans_by_ids(session: AsyncSession, plan_ids: set[int]) -> dict[int, SubscriptionPlan]:
    return await repository.plans_by_ids(session, plan_ids)


async def add_ons_by_ids(session: AsyncSession, add_on_ids: set[int]) -> dict[int, AddOn]:
    return await repository.add_ons_by_ids(session, add_on_ids)


async def plans_by_price_ids(
    session: AsyncSession, price_ids: set[str]
) -> dict[str, tuple[SubscriptionPlan, str]]:
    """Each known Stripe price id → (its plan, its billing cycle)."""
    return await repository.plans_by_price_ids(session, price_ids)


async def add_ons_by_price_ids(session: AsyncSession, price_ids: set[str]) -> dict[str, AddOn]:
    """Each known Stripe price id → its add-on."""
    return await repository.add_ons_by_price_ids(session, price_ids)
