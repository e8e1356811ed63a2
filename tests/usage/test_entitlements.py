from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer, SubscriptionPlan
from tests.conftest import TEST_NOW, TokenFactory, bearer
from tests.factories import (
    create_add_on,
    create_customer,
    create_plan,
    create_subscription,
    create_subscription_add_on,
)
from tests.usage.helpers import (
    ENTITLEMENTS,
    at,
    call,
    counted_statements,
    decision,
    get_entitlements,
    post_usage,
)


@pytest_asyncio.fixture
async def plan(session: AsyncSession) -> SubscriptionPlan:
    return await create_plan(
        session, included_minutes=100, max_agents=5, features={"call_recording": True}
    )


@pytest_asyncio.fixture
async def customer(session: AsyncSession) -> Customer:
    return await create_customer(session, dashboard_user_id="42")


@pytest.fixture
def user(make_token: TokenFactory) -> str:
    return make_token("42")


async def use_minutes(client: httpx.AsyncClient, token: str, minutes: int) -> None:
    response = await post_usage(client, token, call("call-1", minutes))
    assert response.status_code == 201, response.text


async def test_an_active_subscription_with_add_ons(
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    customer: Customer,
    user: str,
) -> None:
    subscription = await create_subscription(session, customer=customer, plan=plan)
    minutes = await create_add_on(
        session, slug="extra-minutes", extra_minutes=50, features={"transcripts": True}
    )
    agents = await create_add_on(session, slug="extra-agents", extra_minutes=0, extra_agents=2)
    await create_subscription_add_on(session, subscription, minutes, quantity=3)
    await create_subscription_add_on(session, subscription, agents)
    await use_minutes(client, user, 40)
    await post_usage(client, user, agents_active=6)

    entitlements = await get_entitlements(client, user)

    assert entitlements == {
        "customer_id": "42",
        "subscription_id": subscription.id,
        "status": "active",
        "plan": {"id": plan.id, "slug": "growth", "name": "Growth"},
        "period_start": "2026-11-01T00:00:00Z",
        "period_end": "2026-12-01T00:00:00Z",
        "limits": {"included_minutes": 250, "agents_allowed": 7},
        "minutes_used": "40",
        "minutes_remaining": "210",
        "peak_agents": 6,
        "features": {"call_recording": True, "transcripts": True},
        "add_ons": [
            {
                "addon_id": minutes.id,
                "slug": "extra-minutes",
                "name": "Extra Minutes",
                "quantity": 3,
                "extra_minutes": 150,
                "extra_agents": 0,
            },
            {
                "addon_id": agents.id,
                "slug": "extra-agents",
                "name": "Extra Agents",
                "quantity": 1,
                "extra_minutes": 0,
                "extra_agents": 2,
            },
        ],
        "call_allowed": True,
        "suspended": False,
        "reason": None,
        "in_grace": False,
        "grace_period_end": None,
        "next_payment_retry": None,
    }


async def test_reaching_100_percent_does_not_block_a_paid_plan(
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    customer: Customer,
    user: str,
) -> None:
    await create_subscription(session, customer=customer, plan=plan)
    await use_minutes(client, user, 130)

    entitlements = await get_entitlements(client, user)

    assert entitlements["minutes_remaining"] == "0"
    assert decision(entitlements) == (True, False, None)


@pytest.mark.parametrize(("minutes", "allowed"), [(99, True), (100, False)])
async def test_a_trial_is_blocked_once_its_minutes_are_used(
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    customer: Customer,
    user: str,
    minutes: int,
    allowed: bool,
) -> None:
    await create_subscription(
        session,
        customer=customer,
        plan=plan,
        status="trialing",
        billing_cycle_anchor=at("2026-12-01T00:00"),
        created_at=at("2026-11-17T00:00"),
    )
    await use_minutes(client, user, minutes)

    entitlements = await get_entitlements(client, user)

    expected = (True, False, None) if allowed else (False, False, "trial_minutes_exhausted")
    assert decision(entitlements) == expected


@pytest.mark.parametrize(
    ("status", "grace_period_ends_at", "expected"),
    [
        ("past_due", TEST_NOW + timedelta(hours=1), (True, False, None)),
        ("past_due", None, (True, False, None)),
        ("past_due", TEST_NOW, (False, True, "grace_period_expired")),
        ("unpaid", None, (False, True, "unpaid")),
        ("paused", None, (False, True, "paused")),
        ("incomplete", None, (False, False, "subscription_not_started")),
        ("pending", None, (False, False, "subscription_not_started")),
    ],
)
async def test_the_subscription_status_decides_whether_calls_are_allowed(
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    customer: Customer,
    user: str,
    status: str,
    grace_period_ends_at: Any,
    expected: tuple[bool, bool, str | None],
) -> None:
    await create_subscription(
        session,
        customer=customer,
        plan=plan,
        status=status,
        grace_period_ends_at=grace_period_ends_at,
    )

    entitlements = await get_entitlements(client, user)

    assert entitlements["status"] == status
    assert decision(entitlements) == expected


@pytest.mark.parametrize("status", ["canceled", "incomplete_expired"])
async def test_an_ended_subscription_is_suspended(
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    customer: Customer,
    user: str,
    status: str,
) -> None:
    await create_subscription(
        session, customer=customer, plan=plan, status=status, ended_at=at("2026-11-20T00:00")
    )

    entitlements = await get_entitlements(client, user)

    assert decision(entitlements) == (False, True, status)


async def test_the_live_subscription_wins_over_an_older_canceled_one(
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    customer: Customer,
    user: str,
) -> None:
    live = await create_subscription(session, customer=customer, plan=plan)
    await create_subscription(
        session, customer=customer, plan=plan, status="canceled", ended_at=at("2026-11-20T00:00")
    )

    entitlements = await get_entitlements(client, user)

    assert entitlements["subscription_id"] == live.id
    assert decision(entitlements) == (True, False, None)


async def test_without_a_subscription_no_call_is_allowed(
    client: httpx.AsyncClient, user: str, make_token: TokenFactory
) -> None:
    # A user the service has never seen: no account, nothing created by asking.
    entitlements = await get_entitlements(client, make_token("9005"))

    assert entitlements["customer_id"] == "9005"
    assert entitlements["subscription_id"] is None
    assert entitlements["limits"] == {"included_minutes": 0, "agents_allowed": 0}
    assert decision(entitlements) == (False, False, "no_subscription")


async def test_a_service_token_asks_for_a_named_customer(
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    customer: Customer,
    make_token: TokenFactory,
) -> None:
    subscription = await create_subscription(session, customer=customer, plan=plan)
    service = make_token("9006", roles=["service"])

    entitlements = await get_entitlements(client, service, customer_id="42")
    unknown = await client.get(ENTITLEMENTS, params={"customer_id": "9"}, headers=bearer(service))

    assert entitlements["subscription_id"] == subscription.id
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "customer_not_found"


async def test_a_user_asking_for_another_customer_is_404(
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    customer: Customer,
    make_token: TokenFactory,
) -> None:
    await create_subscription(session, customer=customer, plan=plan)

    response = await client.get(
        ENTITLEMENTS, params={"customer_id": "42"}, headers=bearer(make_token("7"))
    )

    assert response.status_code == 404


async def test_the_quota_check_is_one_statement(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    customer: Customer,
    user: str,
) -> None:
    await create_subscription(session, customer=customer, plan=plan)
    await use_minutes(client, user, 10)

    with counted_statements(app) as statements:
        entitlements = await get_entitlements(client, user)

    assert entitlements["minutes_used"] == "10"
    assert len(statements) == 1
