from decimal import Decimal
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Subscription, SubscriptionPlan, UsageAlert, UsageRecord
from tests.conftest import TokenFactory, bearer
from tests.factories import create_customer, create_plan, create_subscription
from tests.usage.helpers import (
    BATCH,
    call,
    counted_statements,
    daily_totals,
    period_totals,
    post_usage,
)


@pytest_asyncio.fixture
async def plan(session: AsyncSession) -> SubscriptionPlan:
    return await create_plan(session, included_minutes=2_000)


@pytest_asyncio.fixture
async def subscription(session: AsyncSession, plan: SubscriptionPlan) -> Subscription:
    customer = await create_customer(session, dashboard_user_id="42")
    return await create_subscription(session, customer=customer, plan=plan)


@pytest.fixture
def user(make_token: TokenFactory) -> str:
    return make_token("42")


@pytest.fixture
def service(make_token: TokenFactory) -> str:
    return make_token("9001", roles=["service"])


async def post_batch(client: httpx.AsyncClient, token: str, records: list[Any]) -> dict[str, Any]:
    response = await client.post(BATCH, json={"records": records}, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is True
    return body


def outcome(result: dict[str, Any]) -> tuple[str, str | None]:
    return result["status"], result["error"]["code"] if result["error"] else None


async def test_each_record_is_answered_on_its_own_in_order(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    await post_usage(client, user, call("known", 2))

    body = await post_batch(
        client,
        user,
        [
            call("a", 1),
            call("known", 2),
            call("known", 3),
            call("a", "1.0"),
            call("a", 4),
            "not a record",
            call("b", -1),
            call("c", 1, timestamp="2026-09-20T00:00Z"),
            call("d", 1, timestamp="2026-07-01T00:00Z"),
            call("e", 1, timestamp="2027-01-01T00:00Z"),
            call("f", 1, customer_id="7"),
            {"agents_active": 6},
            {"call_id": "g", "duration_seconds": 30},
        ],
    )

    assert [outcome(result) for result in body["results"]] == [
        ("created", None),
        ("duplicate", None),
        ("conflict", "usage_conflict"),
        ("duplicate", None),
        ("conflict", "usage_conflict"),
        ("invalid", "validation_error"),
        ("invalid", "validation_error"),
        ("invalid", "usage_too_late"),
        ("conflict", "no_active_subscription"),
        ("invalid", "usage_in_future"),
        ("invalid", "customer_not_found"),
        ("created", None),
        ("created", None),
    ]
    assert [result["index"] for result in body["results"]] == list(range(13))
    assert body["counts"] == {"created": 3, "duplicate": 2, "conflict": 3, "invalid": 5}
    results = body["results"]
    assert results[0]["record_id"] == results[3]["record_id"]
    assert results[0]["call_id"] == "a"
    assert results[6]["error"]["details"][0]["field"] == "minutes_used"
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    # known (2, before) + a (1) + g (0.5); the agents reading raised the peak.
    assert (totals.minutes_used, totals.peak_agents, totals.record_count) == (
        Decimal("3.5"),
        6,
        4,
    )
    assert await daily_totals(session, subscription.id) == {"2026-11-25": Decimal("3.5")}


async def test_a_service_batch_names_a_customer_per_record(
    client: httpx.AsyncClient,
    session: AsyncSession,
    plan: SubscriptionPlan,
    subscription: Subscription,
    service: str,
) -> None:
    other = await create_customer(session, dashboard_user_id="43")
    other_subscription = await create_subscription(session, customer=other, plan=plan)

    body = await post_batch(
        client,
        service,
        [
            call("x", 1, customer_id=42),
            call("x", 2, customer_id=43),
            call("y", 1, customer_id="nobody"),
            call("z", 1),
        ],
    )

    assert [outcome(result) for result in body["results"]] == [
        ("created", None),
        ("created", None),
        ("invalid", "customer_not_found"),
        ("invalid", "customer_not_found"),
    ]
    mine = await period_totals(session, subscription.id)
    theirs = await period_totals(session, other_subscription.id)
    assert mine is not None and theirs is not None
    assert (mine.minutes_used, theirs.minutes_used) == (Decimal(1), Decimal(2))


async def test_a_user_batch_naming_another_customer_is_refused_per_record(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    body = await post_batch(client, user, [call("x", 1, customer_id=43), call("y", 1)])
    assert [outcome(result) for result in body["results"]] == [
        ("invalid", "customer_not_found"),
        ("created", None),
    ]


async def test_a_service_batch_replaces_user_records(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    user: str,
    service: str,
) -> None:
    await post_batch(client, user, [call("p", 1), call("q", 2), call("r", 3)])

    body = await post_batch(
        client,
        service,
        [
            call("p", 10, customer_id=42),
            call("q", 2, customer_id=42),
            call("r", 1, customer_id=42),
            call("p", 11, customer_id=42),
        ],
    )

    assert [(result["status"], result["replaced"]) for result in body["results"]] == [
        ("created", True),
        ("duplicate", False),
        ("created", True),
        ("conflict", False),
    ]
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.minutes_used, totals.record_count) == (Decimal(13), 3)
    assert await daily_totals(session, subscription.id) == {"2026-11-25": Decimal(13)}


async def test_a_thousand_records_take_a_few_statements_and_count_exactly(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    user: str,
) -> None:
    records = [call(f"call-{n}", "0.5") for n in range(1_000)]

    with counted_statements(app) as statements:
        body = await post_batch(client, user, records)

    assert body["counts"] == {"created": 1_000, "duplicate": 0, "conflict": 0, "invalid": 0}
    # The subscriptions read, then the insert with its counters (500 of 2,000 minutes
    # crosses no threshold, so no alert statement).
    assert len(statements) == 2
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.minutes_used, totals.record_count) == (Decimal(500), 1_000)
    count = await session.scalar(select(func.count()).select_from(UsageRecord))
    assert count == 1_000

    with counted_statements(app) as statements:
        again = await post_batch(client, user, records)

    assert again["counts"]["duplicate"] == 1_000
    # ... and one read of the calls already recorded.
    assert len(statements) == 3
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert totals.record_count == 1_000


async def test_a_batch_crossing_thresholds_raises_each_alert_once(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    body = await post_batch(client, user, [call(f"call-{n}", 100) for n in range(21)])

    assert body["counts"]["created"] == 21
    alerts = (
        await session.execute(
            select(UsageAlert.kind, UsageAlert.resource, UsageAlert.threshold).order_by(
                UsageAlert.id
            )
        )
    ).all()
    assert sorted(alerts) == [
        ("overage", "", 0),
        ("usage_threshold", "minutes", 80),
        ("usage_threshold", "minutes", 100),
    ]


@pytest.mark.parametrize("records", [[], [call(f"c{n}", 1) for n in range(1_001)]])
async def test_an_empty_or_oversized_batch_is_422(
    client: httpx.AsyncClient, subscription: Subscription, user: str, records: list[Any]
) -> None:
    response = await client.post(BATCH, json={"records": records}, headers=bearer(user))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "validation_error"


async def test_a_batch_body_must_be_an_object_with_records(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    for body in ([call("a", 1)], {"records": "x"}, {"records": [], "extra": 1}):
        response = await client.post(BATCH, json=body, headers=bearer(user))
        assert response.status_code == 422


async def test_a_nul_in_one_record_rejects_only_that_record(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    body = await post_batch(client, user, [call("bad\x00", 1), call("good", 1)])
    assert [outcome(result) for result in body["results"]] == [
        ("invalid", "validation_error"),
        ("created", None),
    ]
