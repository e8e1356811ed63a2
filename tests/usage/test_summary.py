from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Subscription, SubscriptionPlan
from tests.conftest import TokenFactory, bearer
from tests.factories import (
    create_add_on,
    create_customer,
    create_plan,
    create_subscription,
    create_subscription_add_on,
)
from tests.usage.helpers import USAGE, at, call, post_usage


@pytest_asyncio.fixture
async def plan(session: AsyncSession) -> SubscriptionPlan:
    # 2,000 minutes and 10 agents included; 2.5 cents a minute and $15 an agent beyond.
    return await create_plan(session)


@pytest_asyncio.fixture
async def subscription(session: AsyncSession, plan: SubscriptionPlan) -> Subscription:
    customer = await create_customer(session, dashboard_user_id="42")
    return await create_subscription(session, customer=customer, plan=plan)


@pytest.fixture
def user(make_token: TokenFactory) -> str:
    return make_token("42")


async def get_summary(client: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    response = await client.get(USAGE, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is True
    usage: dict[str, Any] = body["usage"]
    return usage


async def record(client: httpx.AsyncClient, token: str, body: dict[str, Any]) -> None:
    response = await post_usage(client, token, body)
    assert response.status_code == 201, response.text


async def test_summary_with_add_ons_and_overage_to_the_cent(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    minutes = await create_add_on(session, slug="extra-minutes", extra_minutes=500)
    agents = await create_add_on(session, slug="extra-agents", extra_minutes=0, extra_agents=1)
    await create_subscription_add_on(session, subscription, minutes, quantity=2)
    await create_subscription_add_on(session, subscription, agents, quantity=2)
    for body in (
        call("a", "1000.25", timestamp="2026-11-03T10:00Z"),
        call("b", 1000, timestamp="2026-11-10T10:00Z"),
        call("c", 1000, timestamp="2026-11-10T11:00Z"),
        call("d", "200.25", timestamp="2026-11-25T09:00Z"),
        {"agents_active": 14, "timestamp": "2026-11-12T10:00Z"},
        {"agents_active": 9},
    ):
        await record(client, user, body)

    usage = await get_summary(client, user)

    # Included: 2,000 + 2 x 500 = 3,000 minutes and 10 + 2 x 1 = 12 agents. Used: 3,200.5
    # minutes and 14 agents at peak: 200.5 x 2.5 = 501.25 -> 501 cents, and 2 x 1,500.
    # Projected over 30 days from 24.5: 3,200.5 x 30 / 24.5 = 3,918.9795918...; the minutes
    # over the allowance 918.9795918... x 2.5 = 2,297.449 -> 2,297 cents.
    assert {key: value for key, value in usage.items() if key != "daily"} == {
        "subscription_id": subscription.id,
        "status": "active",
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "currency": "usd",
        "minutes_used": "3200.5",
        "minutes_included": 3000,
        "minutes_remaining": "0",
        "peak_agents": 14,
        "agents_allowed": 12,
        "overage_rate_per_minute": "2.5",
        "overage_rate_per_agent": "1500",
        "overage": {
            "minutes": "200.5",
            "agents": 2,
            "minutes_amount": 501,
            "agents_amount": 3000,
            "amount": 3501,
        },
        "projected_minutes": "3918.9796",
        "projected_overage": {
            "minutes": "918.9796",
            "agents": 2,
            "minutes_amount": 2297,
            "agents_amount": 3000,
            "amount": 5297,
        },
    }
    daily = {day["date"]: day["minutes"] for day in usage["daily"]}
    assert list(daily) == [f"2026-11-{day:02}" for day in range(1, 26)]
    assert {day: minutes for day, minutes in daily.items() if minutes != "0"} == {
        "2026-11-03": "1000.25",
        "2026-11-10": "2000",
        "2026-11-25": "200.25",
    }


async def test_summary_within_the_allowance_has_no_overage(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    await record(client, user, call("a", "490.5", timestamp="2026-11-11T00:00Z"))

    usage = await get_summary(client, user)

    assert usage["minutes_used"] == "490.5"
    assert usage["minutes_remaining"] == "1509.5"
    assert usage["overage"]["amount"] == 0
    # 490.5 x 30 / 24.5 = 600.6122...: still within the 2,000 minutes.
    assert usage["projected_minutes"] == "600.6122"
    assert usage["projected_overage"]["amount"] == 0


async def test_a_new_period_starts_from_zero(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    await record(client, user, call("october", 1400, timestamp="2026-10-20T00:00Z"))
    await record(client, user, call("october-2", 1400, timestamp="2026-10-21T00:00Z"))

    usage = await get_summary(client, user)

    assert (usage["minutes_used"], usage["peak_agents"], usage["overage"]["amount"]) == (
        "0",
        0,
        0,
    )
    assert all(day["minutes"] == "0" for day in usage["daily"])


async def test_a_trial_accrues_no_overage(
    client: httpx.AsyncClient, session: AsyncSession, plan: SubscriptionPlan, user: str
) -> None:
    customer = await create_customer(session, dashboard_user_id="42")
    await create_subscription(
        session,
        customer=customer,
        plan=plan,
        status="trialing",
        billing_cycle_anchor=at("2026-11-29T00:00"),
        created_at=at("2026-11-15T00:00"),
        trial_end=at("2026-11-29T00:00"),
    )
    for n in range(2):
        await record(client, user, call(f"call-{n}", 1200))
    await record(client, user, {"agents_active": 30})

    usage = await get_summary(client, user)

    assert usage["period_start"] == "2026-10-29T00:00:00Z"
    assert usage["minutes_used"] == "2400"
    assert usage["overage"]["amount"] == 0
    assert usage["projected_overage"]["amount"] == 0


async def test_a_yearly_subscription_has_monthly_periods(
    client: httpx.AsyncClient, session: AsyncSession, plan: SubscriptionPlan, user: str
) -> None:
    customer = await create_customer(session, dashboard_user_id="42")
    await create_subscription(
        session,
        customer=customer,
        plan=plan,
        billing_cycle="yearly",
        billing_cycle_anchor=at("2026-03-15T06:00"),
        created_at=at("2026-03-15T06:00"),
        current_period_start=at("2026-03-15T06:00"),
        current_period_end=at("2027-03-15T06:00"),
    )
    await record(client, user, call("a", 1400, timestamp="2026-11-14T00:00Z"))
    await record(client, user, call("b", 30, timestamp="2026-11-16T00:00Z"))

    usage = await get_summary(client, user)

    assert (usage["period_start"], usage["period_end"]) == (
        "2026-11-15T06:00:00Z",
        "2026-12-15T06:00:00Z",
    )
    assert usage["minutes_used"] == "30"


async def test_without_a_subscription_the_summary_is_404(
    client: httpx.AsyncClient, session: AsyncSession, user: str
) -> None:
    response = await client.get(USAGE, headers=bearer(user))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "subscription_not_found"


async def test_a_service_token_reads_a_named_customers_summary(
    client: httpx.AsyncClient, subscription: Subscription, make_token: TokenFactory
) -> None:
    service = make_token("9001", roles=["service"])

    usage = await get_summary(client, service, customer_id="42")
    unknown = await client.get(USAGE, params={"customer_id": "9"}, headers=bearer(service))
    other = await client.get(USAGE, params={"customer_id": "42"}, headers=bearer(make_token("7")))

    assert usage["subscription_id"] == subscription.id
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "customer_not_found"
    assert other.status_code == 404
