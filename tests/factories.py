"""Small factories for test data: override only what the test is about."""

from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AddOn, Customer, SubscriptionPlan


async def create_plan(session: AsyncSession, **overrides: Any) -> SubscriptionPlan:
    slug = overrides.pop("slug", "growth")
    values: dict[str, Any] = {
        "slug": slug,
        "name": slug.title(),
        "description": "",
        "currency": "usd",
        "monthly_price": 9_900,
        "yearly_price": 99_000,
        "included_minutes": 2_000,
        "max_agents": 10,
        "overage_rate_per_minute": Decimal("2.5"),
        "overage_rate_per_agent": Decimal("1500"),
        "features": {"call_recording": True},
        **overrides,
    }
    plan = SubscriptionPlan(**values)
    session.add(plan)
    await session.commit()
    return plan


async def create_add_on(session: AsyncSession, **overrides: Any) -> AddOn:
    slug = overrides.pop("slug", "extra-minutes")
    values: dict[str, Any] = {
        "slug": slug,
        "name": slug.replace("-", " ").title(),
        "currency": "usd",
        "monthly_price": 2_000,
        "yearly_price": 20_000,
        "extra_minutes": 1_000,
        **overrides,
    }
    add_on = AddOn(**values)
    session.add(add_on)
    await session.commit()
    return add_on


async def create_customer(session: AsyncSession, **overrides: Any) -> Customer:
    customer = Customer(**{"dashboard_user_id": "42", **overrides})
    session.add(customer)
    await session.commit()
    return customer


async def create_synced_plan(
    session: AsyncSession, stripe: Any, *, slug: str = "growth", **overrides: Any
) -> SubscriptionPlan:
    """A plan whose product and prices exist on the (fake) Stripe, as after a catalog sync."""
    monthly = overrides.get("monthly_price", 9_900)
    yearly = overrides.get("yearly_price", 99_000)
    product = stripe.add_product(id=f"billing_plan_{slug}", name=slug.title())
    monthly_price = stripe.add_price(product=product["id"], unit_amount=monthly, interval="month")
    yearly_price = stripe.add_price(product=product["id"], unit_amount=yearly, interval="year")
    return await create_plan(
        session,
        slug=slug,
        stripe_product_id=product["id"],
        stripe_monthly_price_id=monthly_price["id"],
        stripe_yearly_price_id=yearly_price["id"],
        **overrides,
    )


async def create_synced_add_on(
    session: AsyncSession, stripe: Any, *, slug: str = "extra-agents", **overrides: Any
) -> AddOn:
    monthly = overrides.get("monthly_price", 2_000)
    yearly = overrides.get("yearly_price", 20_000)
    product = stripe.add_product(id=f"billing_addon_{slug}", name=slug)
    monthly_price = stripe.add_price(product=product["id"], unit_amount=monthly, interval="month")
    yearly_price = stripe.add_price(product=product["id"], unit_amount=yearly, interval="year")
    return await create_add_on(
        session,
        slug=slug,
        stripe_product_id=product["id"],
        stripe_monthly_price_id=monthly_price["id"],
        stripe_yearly_price_id=yearly_price["id"],
        **{"max_quantity": 10, **overrides},
    )
