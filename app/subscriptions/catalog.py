"""What a subscription is made of: its plan and add-ons from the catalog (read through the
plans service), and their Stripe prices for a cycle."""

import hashlib
import json

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AddOn, SubscriptionAddOn, SubscriptionPlan
from app.plans import service as plans_service
from app.plans.errors import AddOnNotFound, PlanNotFound
from app.subscriptions import repository
from app.subscriptions.errors import AddOnQuantityInvalid, PlanNotAvailable, PlanNotSynced

CYCLE_INTERVAL = {"monthly": "month", "yearly": "year"}
CYCLE_MONTHS = {"monthly": 1, "yearly": 12}


async def resolve_plan(session: AsyncSession, plan_reference: int | str) -> SubscriptionPlan:
    """A plan by id, or by slug (the dashboard's older ids); 404 unknown, 409 inactive."""
    if isinstance(plan_reference, int) or plan_reference.isdigit():
        plan_id = int(plan_reference)
        plan = await plans_service.find_plan(session, plan_id) if plan_id < 2**63 else None
    else:
        plan = await plans_service.find_plan_by_slug(session, plan_reference)
    if plan is None:
        raise PlanNotFound()
    if not plan.is_active:
        raise PlanNotAvailable()
    return plan


async def resolve_add_on(session: AsyncSession, add_on_id: int, quantity: int) -> AddOn:
    add_on = await plans_service.find_add_on(session, add_on_id)
    if add_on is None or not add_on.is_active:
        raise AddOnNotFound()
    if quantity > add_on.max_quantity:
        raise AddOnQuantityInvalid(
            f"At most {add_on.max_quantity} of this add-on.",
            details={"max_quantity": add_on.max_quantity},
        )
    return add_on


async def plans_by_ids(session: AsyncSession, plan_ids: set[int]) -> dict[int, SubscriptionPlan]:
    return await plans_service.plans_by_ids(session, plan_ids)


async def add_on_lines(
    session: AsyncSession, subscription_id: int
) -> list[tuple[SubscriptionAddOn, AddOn]]:
    """The subscription's add-on lines, each with the add-on it holds, in line order."""
    lines = await repository.list_add_on_lines(session, subscription_id)
    add_ons = await plans_service.add_ons_by_ids(session, {line.add_on_id for line in lines})
    return [(line, add_ons[line.add_on_id]) for line in lines]


def price_id(row: SubscriptionPlan | AddOn, billing_cycle: str) -> str:
    price = (
        row.stripe_monthly_price_id if billing_cycle == "monthly" else row.stripe_yearly_price_id
    )
    if price is None:
        raise PlanNotSynced()
    return price


def price_amount(row: SubscriptionPlan | AddOn, billing_cycle: str) -> int:
    return row.monthly_price if billing_cycle == "monthly" else row.yearly_price


def fingerprint(*parts: object) -> str:
    """A stable hash of what a request asked for: part of idempotency keys and reservations."""
    encoded = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()
