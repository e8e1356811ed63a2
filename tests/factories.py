"""Small factories for test data: override only what the test is about."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    AddOn,
    BillingHistory,
    Customer,
    OverageCharge,
    Subscription,
    SubscriptionAddOn,
    SubscriptionPlan,
)
from tests.conftest import TEST_NOW, TokenFactory, bearer

# TEST_NOW is 2026-11-25 12:00 UTC: a subscription's current period runs from November 1st to
# December 1st (30 days, 24.5 of them elapsed), on a billing anchor of August 1st.
ANCHOR = datetime(2026, 8, 1, tzinfo=UTC)
PERIOD_START = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 12, 1, tzinfo=UTC)
PREVIOUS_PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)

Row = TypeVar("Row")


async def _saved(session: AsyncSession, row: Row) -> Row:
    session.add(row)
    await session.commit()
    return row


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
    return await _saved(session, SubscriptionPlan(**values))


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
    return await _saved(session, AddOn(**values))


async def create_customer(session: AsyncSession, **overrides: Any) -> Customer:
    return await _saved(session, Customer(**{"dashboard_user_id": "42", **overrides}))


def _synced_catalog_ids(
    stripe: Any, *, product_id: str, name: str, monthly: int, yearly: int
) -> dict[str, Any]:
    """A product with a monthly and a yearly price on the (fake) Stripe: the ids a catalog sync
    stores on the plan or add-on."""
    product = stripe.add_product(id=product_id, name=name)
    monthly_price = stripe.add_price(product=product["id"], unit_amount=monthly, interval="month")
    yearly_price = stripe.add_price(product=product["id"], unit_amount=yearly, interval="year")
    return {
        "stripe_product_id": product["id"],
        "stripe_monthly_price_id": monthly_price["id"],
        "stripe_yearly_price_id": yearly_price["id"],
    }


async def create_synced_plan(
    session: AsyncSession, stripe: Any, *, slug: str = "growth", **overrides: Any
) -> SubscriptionPlan:
    """A plan whose product and prices exist on the (fake) Stripe, as after a catalog sync."""
    synced = _synced_catalog_ids(
        stripe,
        product_id=f"billing_plan_{slug}",
        name=slug.title(),
        monthly=overrides.get("monthly_price", 9_900),
        yearly=overrides.get("yearly_price", 99_000),
    )
    return await create_plan(session, slug=slug, **synced, **overrides)


async def create_synced_add_on(
    session: AsyncSession, stripe: Any, *, slug: str = "extra-agents", **overrides: Any
) -> AddOn:
    synced = _synced_catalog_ids(
        stripe,
        product_id=f"billing_addon_{slug}",
        name=slug,
        monthly=overrides.get("monthly_price", 2_000),
        yearly=overrides.get("yearly_price", 20_000),
    )
    return await create_add_on(session, slug=slug, **synced, **{"max_quantity": 10, **overrides})


async def create_subscription(
    session: AsyncSession,
    *,
    customer: Customer | None = None,
    plan: SubscriptionPlan | None = None,
    status: str = "active",
    **overrides: Any,
) -> Subscription:
    """A subscription row as the Stripe sync leaves it (built directly, no Stripe), in its
    current period; with a customer and a plan of its own unless given."""
    if customer is None:
        customer = await create_customer(session)
    if plan is None:
        plan = await create_plan(session, slug=f"plan-{customer.id}", name=f"Plan {customer.id}")
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "plan_id": plan.id,
        "billing_cycle": "monthly",
        "status": status,
        "billing_cycle_anchor": ANCHOR,
        "current_period_start": PERIOD_START,
        "current_period_end": PERIOD_END,
        "created_at": ANCHOR,
        **overrides,
    }
    return await _saved(session, Subscription(**values))


async def subscribe_through_api(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    stripe: Any,
    *,
    billing_cycle: str | None = None,
) -> dict[str, Any]:
    """User 42 subscribes to a synced plan without a trial through POST subscribe/, paying
    with a card that succeeds; returns the subscription as the (fake) Stripe holds it."""
    plan = await create_synced_plan(session, stripe, trial_days=0)
    body: dict[str, Any] = {"plan_id": plan.id, "payment_method_id": "pm_card_visa"}
    if billing_cycle is not None:
        body["billing_cycle"] = billing_cycle
    response = await client.post(
        "/subscriptions/api/subscribe/", json=body, headers=bearer(make_token("42"))
    )
    assert response.status_code == 200, response.text
    [stripe_subscription] = stripe.subscriptions.values()
    subscription: dict[str, Any] = stripe_subscription
    return subscription


async def create_subscribed_customer(
    session: AsyncSession, dashboard_user_id: str = "42", **overrides: Any
) -> tuple[Customer, Subscription]:
    customer = await create_customer(session, dashboard_user_id=dashboard_user_id)
    return customer, await create_subscription(session, customer=customer, **overrides)


async def create_subscription_add_on(
    session: AsyncSession, subscription: Subscription, add_on: AddOn, quantity: int = 1
) -> SubscriptionAddOn:
    return await _saved(
        session,
        SubscriptionAddOn(subscription_id=subscription.id, add_on_id=add_on.id, quantity=quantity),
    )


async def create_overage_charge(
    session: AsyncSession, subscription: Subscription, **overrides: Any
) -> OverageCharge:
    """The charge for the previous period's overage: 10 minutes over at create_plan's 2.5."""
    values: dict[str, Any] = {
        "subscription_id": subscription.id,
        "period_start": PREVIOUS_PERIOD_START,
        "period_end": PERIOD_START,
        "sequence": 0,
        "minutes_over": Decimal(10),
        "agents_over": 0,
        "minutes_amount": 25,
        "agents_amount": 0,
        "currency": "usd",
        "status": "pending",
        "created_at": PERIOD_START,
        "rate_per_minute": Decimal("2.5"),
        "rate_per_agent": Decimal("1500"),
        **overrides,
    }
    values.setdefault("amount", values["minutes_amount"] + values["agents_amount"])
    return await _saved(session, OverageCharge(**values))


async def create_billing_row(
    session: AsyncSession, customer: Customer, **overrides: Any
) -> BillingHistory:
    """A billing-history row: by default a paid subscription invoice."""
    values: dict[str, Any] = {
        "customer_id": customer.id,
        "type": "subscription",
        "status": "paid",
        "amount": 9_900,
        "currency": "usd",
        "occurred_at": TEST_NOW,
        **overrides,
    }
    return await _saved(session, BillingHistory(**values))


async def insert_billing_rows(
    session: AsyncSession,
    customer: Customer,
    *,
    count: int,
    first_occurred_at: datetime,
    status: str = "paid",
    prefix: str = "in_bulk_",
) -> None:
    """`count` invoice rows in one statement, a minute apart: for tests that need thousands."""
    await session.execute(
        text(
            "INSERT INTO billing_history (customer_id, type, status, amount, amount_paid,"
            " amount_due, currency, stripe_invoice_id, number, invoice_pdf_url, occurred_at)"
            " SELECT :customer_id, 'subscription', CAST(:status AS text), 100 * n, 100 * n,"
            " 100 * n, 'usd', CAST(:prefix AS text) || n, 'NO-' || n,"
            " 'https://pay.stripe.com/invoice/' || CAST(:prefix AS text) || n || '/pdf',"
            " CAST(:first AS timestamptz) + n * interval '1 minute'"
            " FROM generate_series(1, :count) AS n"
        ),
        {
            "customer_id": customer.id,
            "status": status,
            "prefix": prefix,
            "first": first_occurred_at,
            "count": count,
        },
    )
    await session.commit()
