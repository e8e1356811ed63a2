"""Many requests at once: each call counted once, each alert raised once, no deadlock."""

import asyncio
import random
from collections import Counter
from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Subscription, UsageAlert, UsageRecord
from tests.conftest import TokenFactory, bearer
from tests.factories import create_customer, create_plan, create_subscription
from tests.usage.helpers import BATCH, call, period_totals, post_usage


@pytest_asyncio.fixture
async def subscription(session: AsyncSession) -> Subscription:
    plan = await create_plan(session, included_minutes=100, max_agents=10)
    customer = await create_customer(session, dashboard_user_id="42")
    return await create_subscription(session, customer=customer, plan=plan)


@pytest.fixture
def user(make_token: TokenFactory) -> str:
    return make_token("42")


async def records_of(session: AsyncSession, call_id: str) -> int:
    count = await session.scalar(
        select(func.count()).select_from(UsageRecord).where(UsageRecord.call_id == call_id)
    )
    return count or 0


async def test_50_concurrent_copies_of_one_call_count_once(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    responses = await asyncio.gather(
        *(post_usage(client, user, call("call-1", "2.5")) for _ in range(50))
    )

    assert Counter(response.status_code for response in responses) == {201: 1, 200: 49}
    assert all(r.json()["duplicate"] for r in responses if r.status_code == 200)
    assert len({r.json()["usage_record"]["id"] for r in responses}) == 1
    assert await records_of(session, "call-1") == 1
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.minutes_used, totals.record_count) == (Decimal("2.5"), 1)


async def test_concurrent_user_and_service_copies_end_with_the_services_minutes_once(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    user: str,
    make_token: TokenFactory,
) -> None:
    service = make_token("9001", roles=["service"])
    requests = [post_usage(client, user, call("call-1", 5)) for _ in range(25)] + [
        post_usage(client, service, call("call-1", 7, customer_id=42)) for _ in range(25)
    ]
    random.Random(5).shuffle(requests)

    responses = await asyncio.gather(*requests)

    assert {response.status_code for response in responses} <= {200, 201, 409}
    assert await records_of(session, "call-1") == 1
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.minutes_used, totals.record_count) == (Decimal(7), 1)


async def test_200_concurrent_records_crossing_80_and_100_percent_raise_each_alert_once(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    # 100 calls of 1.5 minutes (150 of 100 included) and 100 readings of 1 to 20 agents
    # (10 allowed), all at once.
    requests = [post_usage(client, user, call(f"call-{n}", "1.5")) for n in range(100)] + [
        post_usage(client, user, agents_active=n % 20 + 1) for n in range(100)
    ]
    random.Random(7).shuffle(requests)

    responses = await asyncio.gather(*requests)

    assert [r.status_code for r in responses] == [201] * 200
    alerts = (
        await session.execute(select(UsageAlert.kind, UsageAlert.resource, UsageAlert.threshold))
    ).all()
    assert sorted(alerts) == [
        ("overage", "", 0),
        ("usage_threshold", "agents", 80),
        ("usage_threshold", "agents", 100),
        ("usage_threshold", "minutes", 80),
        ("usage_threshold", "minutes", 100),
    ]
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.minutes_used, totals.peak_agents, totals.record_count) == (
        Decimal(150),
        20,
        200,
    )


async def test_concurrent_batches_sharing_calls_in_any_order_count_each_call_once(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    calls = [call(f"call-{n}", 1) for n in range(100)]

    async def post_shuffled(seed: int) -> dict[str, Any]:
        records = calls[:]
        random.Random(seed).shuffle(records)
        response = await client.post(BATCH, json={"records": records}, headers=bearer(user))
        assert response.status_code == 200, response.text
        counts: dict[str, Any] = response.json()["counts"]
        return counts

    counts = await asyncio.gather(*(post_shuffled(seed) for seed in range(10)))

    assert sum(count["created"] for count in counts) == 100
    assert sum(count["duplicate"] for count in counts) == 900
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.minutes_used, totals.record_count) == (Decimal(100), 100)
