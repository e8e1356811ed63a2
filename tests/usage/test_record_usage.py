import json
from datetime import timedelta
from decimal import Decimal

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Subscription, SubscriptionPlan, UsagePeriodTotals, UsageRecord
from tests.conftest import TEST_NOW, TokenFactory, bearer
from tests.factories import create_customer, create_plan, create_subscription
from tests.usage.helpers import (
    USAGE,
    at,
    call,
    counted_statements,
    daily_totals,
    period_totals,
    post_usage,
)


@pytest_asyncio.fixture
async def plan(session: AsyncSession) -> SubscriptionPlan:
    return await create_plan(session)


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


async def stored_record(session: AsyncSession, call_id: str) -> UsageRecord:
    record = await session.scalar(
        select(UsageRecord)
        .where(UsageRecord.call_id == call_id)
        .execution_options(populate_existing=True)
    )
    assert record is not None
    return record


async def test_a_call_is_recorded_and_counted_in_its_period_and_day(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    response = await post_usage(client, user, call("call-1", 12.5, timestamp="2026-11-20T23:59Z"))

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["success"] is True
    assert body["duplicate"] is False
    assert body["usage_record"] == {
        "id": body["usage_record"]["id"],
        "kind": "minutes",
        "call_id": "call-1",
        "minutes": "12.5",
        "agents": None,
        "timestamp": "2026-11-20T23:59:00Z",
        "subscription_id": subscription.id,
        "period_start": "2026-11-01T00:00:00Z",
        "source": "user",
    }
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.minutes_used, totals.peak_agents, totals.record_count) == (
        Decimal("12.5"),
        0,
        1,
    )
    assert totals.period_end == at("2026-12-01T00:00")
    assert await daily_totals(session, subscription.id) == {"2026-11-20": Decimal("12.5")}


async def test_the_same_call_again_is_a_duplicate_counted_once(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    first = await post_usage(client, user, call("call-1", 5))
    # 5 and 5.0 are the same amount as sent.
    again = await post_usage(client, user, call("call-1", "5.0"))

    assert first.status_code == 201
    assert again.status_code == 200, again.text
    assert again.json()["duplicate"] is True
    assert again.json()["usage_record"]["id"] == first.json()["usage_record"]["id"]
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.minutes_used, totals.record_count) == (Decimal(5), 1)


async def test_the_same_call_with_other_minutes_is_409_usage_conflict(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    await post_usage(client, user, call("call-1", 5))

    response = await post_usage(client, user, call("call-1", 6))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "usage_conflict"
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert totals.minutes_used == Decimal(5)


async def test_the_services_record_replaces_a_users_and_moves_the_counters_by_the_difference(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    user: str,
    service: str,
) -> None:
    await post_usage(client, user, call("call-1", 1, timestamp="2026-11-20T10:00Z"))
    await post_usage(client, user, call("call-2", 2, timestamp="2026-11-20T11:00Z"))

    response = await post_usage(
        client, service, call("call-1", 7, timestamp="2026-11-21T10:00Z", customer_id=42)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["duplicate"], body["replaced"]) == (False, True)
    assert body["usage_record"]["minutes"] == "7"
    assert body["usage_record"]["source"] == "service"
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.minutes_used, totals.record_count) == (Decimal(9), 2)
    assert await daily_totals(session, subscription.id) == {
        "2026-11-20": Decimal(2),
        "2026-11-21": Decimal(7),
    }
    record = await stored_record(session, "call-1")
    assert (record.minutes, record.source) == (Decimal(7), "service")
    assert record.replaced_payload is not None
    audit = json.loads(record.replaced_payload)
    assert audit["minutes"] == "1"
    assert audit["source"] == "user"
    assert audit["timestamp"] == "2026-11-20T10:00:00+00:00"


async def test_a_replacement_into_another_period_moves_the_minutes_between_periods(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    user: str,
    service: str,
) -> None:
    await post_usage(client, user, call("call-1", 4, timestamp="2026-11-02T10:00Z"))

    response = await post_usage(
        client, service, call("call-1", 3, timestamp="2026-10-31T23:00Z", customer_id="42")
    )

    assert response.status_code == 200, response.text
    november = await period_totals(session, subscription.id)
    october = await period_totals(session, subscription.id, at("2026-10-01T00:00"))
    assert november is not None and october is not None
    assert (november.minutes_used, november.record_count) == (Decimal(0), 0)
    assert (october.minutes_used, october.record_count) == (Decimal(3), 1)
    assert await daily_totals(session, subscription.id) == {
        "2026-10-31": Decimal(3),
        "2026-11-02": Decimal(0),
    }


async def test_a_user_cannot_replace_the_services_record_nor_the_service_its_own(
    client: httpx.AsyncClient, subscription: Subscription, user: str, service: str
) -> None:
    await post_usage(client, service, call("call-1", 5, customer_id="42"))

    by_user = await post_usage(client, user, call("call-1", 1))
    by_service = await post_usage(client, service, call("call-1", 6, customer_id="42"))

    assert by_user.status_code == 409
    assert by_service.status_code == 409
    assert by_service.json()["error"]["code"] == "usage_conflict"


async def test_the_service_confirming_a_users_record_owns_it_from_then_on(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    user: str,
    service: str,
) -> None:
    await post_usage(client, user, call("call-1", 5))

    confirmed = await post_usage(client, service, call("call-1", 5, customer_id="42"))
    changed = await post_usage(client, service, call("call-1", 9, customer_id="42"))

    assert confirmed.status_code == 200
    assert confirmed.json()["duplicate"] is True
    assert confirmed.json()["usage_record"]["source"] == "service"
    assert changed.status_code == 409
    assert (await stored_record(session, "call-1")).source == "service"


async def test_a_service_token_must_name_a_known_customer(
    client: httpx.AsyncClient, subscription: Subscription, service: str
) -> None:
    unknown = await post_usage(client, service, call("call-1", 1, customer_id="nobody"))
    unnamed = await post_usage(client, service, call("call-1", 1))

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "customer_not_found"
    assert unnamed.status_code == 404


async def test_a_user_naming_another_customer_is_404(
    client: httpx.AsyncClient, session: AsyncSession, plan: SubscriptionPlan, user: str
) -> None:
    other = await create_customer(session, dashboard_user_id="7")
    await create_subscription(session, customer=other, plan=plan)

    response = await post_usage(client, user, call("call-1", 1, customer_id=7))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "customer_not_found"


async def test_a_user_naming_themselves_is_fine(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    response = await post_usage(client, user, call("call-1", 1, customer_id=42))
    assert response.status_code == 201


async def test_without_a_subscription_usage_is_409_no_active_subscription(
    client: httpx.AsyncClient, session: AsyncSession, user: str, make_token: TokenFactory
) -> None:
    # No account at all yet, then an account without a subscription.
    response = await post_usage(client, user, call("call-1", 1))
    await create_customer(session, dashboard_user_id="43")
    again = await post_usage(client, make_token("43"), call("call-1", 1))

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_active_subscription"
    assert again.status_code == 409


async def test_a_timestamp_before_the_subscription_started_is_no_active_subscription(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    response = await post_usage(client, user, call("call-1", 1, timestamp="2026-07-31T12:00Z"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_active_subscription"


@pytest.mark.parametrize(
    ("rounding", "seconds", "minutes"),
    [("per_second", 90, "1.5"), ("per_minute", 90, "2"), ("per_minute", 60, "1")],
)
async def test_duration_seconds_follow_the_plans_rounding(
    client: httpx.AsyncClient,
    session: AsyncSession,
    user: str,
    rounding: str,
    seconds: int,
    minutes: str,
) -> None:
    plan = await create_plan(session, call_rounding=rounding)
    customer = await create_customer(session, dashboard_user_id="42")
    subscription = await create_subscription(session, customer=customer, plan=plan)

    response = await post_usage(client, user, call_id="call-1", duration_seconds=seconds)

    assert response.status_code == 201, response.text
    assert response.json()["usage_record"]["minutes"] == minutes
    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert totals.minutes_used == Decimal(minutes)


async def test_an_agents_reading_raises_the_peak_and_never_lowers_it(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    for agents in (4, 9, 6):
        response = await post_usage(client, user, agents_active=agents)
        assert response.status_code == 201, response.text
        assert response.json()["usage_record"]["agents"] == agents

    totals = await period_totals(session, subscription.id)
    assert totals is not None
    assert (totals.peak_agents, totals.minutes_used, totals.record_count) == (9, Decimal(0), 3)
    assert await daily_totals(session, subscription.id) == {}


async def test_a_late_record_for_a_billed_period_is_still_stored_and_counted(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    october = at("2026-10-01T00:00")
    await post_usage(client, user, call("call-1", 10, timestamp="2026-10-15T00:00Z"))
    await session.execute(
        update(UsagePeriodTotals)
        .where(UsagePeriodTotals.subscription_id == subscription.id)
        .values(overage_billed_at=at("2026-11-01T01:00"))
    )
    await session.commit()

    response = await post_usage(client, user, call("call-2", 3, timestamp="2026-10-20T00:00Z"))

    assert response.status_code == 201, response.text
    assert response.json()["usage_record"]["period_start"] == "2026-10-01T00:00:00Z"
    totals = await period_totals(session, subscription.id, october)
    assert totals is not None
    assert (totals.minutes_used, totals.record_count) == (Decimal(13), 2)
    assert totals.overage_billed_at is not None


async def test_a_record_older_than_35_days_after_its_period_is_usage_too_late(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    # September's period closed on October 1st: 55 days before TEST_NOW.
    response = await post_usage(client, user, call("call-1", 1, timestamp="2026-09-20T00:00Z"))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "usage_too_late"


async def test_a_canceled_subscription_still_takes_records_from_before_it_ended(
    client: httpx.AsyncClient, session: AsyncSession, plan: SubscriptionPlan, user: str
) -> None:
    customer = await create_customer(session, dashboard_user_id="42")
    canceled = await create_subscription(
        session,
        customer=customer,
        plan=plan,
        status="canceled",
        ended_at=at("2026-11-10T00:00"),
    )

    before = await post_usage(client, user, call("call-1", 2, timestamp="2026-11-09T00:00Z"))
    after = await post_usage(client, user, call("call-2", 2, timestamp="2026-11-11T00:00Z"))

    assert before.status_code == 201, before.text
    assert before.json()["usage_record"]["subscription_id"] == canceled.id
    assert after.status_code == 409
    assert after.json()["error"]["code"] == "no_active_subscription"


async def test_a_timestamp_up_to_5_minutes_ahead_is_accepted_and_later_is_422(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    soon = (TEST_NOW + timedelta(minutes=5)).isoformat()
    later = (TEST_NOW + timedelta(minutes=5, seconds=1)).isoformat()

    accepted = await post_usage(client, user, call("call-1", 1, timestamp=soon))
    refused = await post_usage(client, user, call("call-2", 1, timestamp=later))

    assert accepted.status_code == 201
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "usage_in_future"


async def test_a_timestamp_without_an_offset_is_utc(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    response = await post_usage(client, user, call("call-1", 1, timestamp="2026-11-20T10:00:00"))
    assert response.json()["usage_record"]["timestamp"] == "2026-11-20T10:00:00Z"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (call("call-1", -1), "validation_error"),
        (call("call-1", "NaN"), "validation_error"),
        (call("call-1", "Infinity"), "validation_error"),
        (call("call-1", "0.00001"), "validation_error"),
        (call("call-1", "1440.0001"), "call_too_long"),
        ({"call_id": "call-1", "duration_seconds": 86_401}, "call_too_long"),
        ({"call_id": "call-1", "duration_seconds": -3}, "validation_error"),
        ({"agents_active": -1}, "validation_error"),
        ({"agents_active": 2.5}, "validation_error"),
        ({"minutes_used": 3}, "validation_error"),
        ({"agents_active": 3, "call_id": "call-1"}, "validation_error"),
        ({**call("call-1", 3), "agents_active": 3}, "validation_error"),
        ({"call_id": "call-1"}, "validation_error"),
        ({**call("call-1", 3), "seconds": 3}, "validation_error"),
        (call("", 3), "validation_error"),
        (call("x" * 256, 3), "validation_error"),
        (call("call\x00", 3), "validation_error"),
        (call("call-1", 3, timestamp="yesterday"), "validation_error"),
        # Valid ISO-8601, but out of datetime's range once moved to UTC.
        (call("call-1", 3, timestamp="0001-01-01T00:30:00+01:00"), "validation_error"),
        (call("call-1", 3, timestamp="9999-12-31T23:59:59-05:00"), "validation_error"),
    ],
)
async def test_bad_records_are_422_and_count_nothing(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    user: str,
    body: dict[str, object],
    code: str,
) -> None:
    response = await post_usage(client, user, body)

    assert response.status_code == 422, response.text
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == code
    assert await period_totals(session, subscription.id) is None


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
async def test_non_finite_json_numbers_are_422(
    client: httpx.AsyncClient, subscription: Subscription, user: str, token: bytes
) -> None:
    response = await client.post(
        USAGE,
        content=b'{"call_id": "call-1", "minutes_used": ' + token + b"}",
        headers={**bearer(user), "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text


async def test_usage_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.post(USAGE, json=call("call-1", 1))
    assert response.status_code == 401


async def test_the_path_without_its_trailing_slash_works_too(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    response = await client.post(USAGE.rstrip("/"), json=call("call-1", 1), headers=bearer(user))
    assert response.status_code == 201


async def test_one_record_costs_two_statements(
    app: FastAPI, client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    await post_usage(client, user, call("warm-up", 1))

    with counted_statements(app) as statements:
        response = await post_usage(client, user, call("call-1", 1))

    assert response.status_code == 201
    # The subscriptions read, then one statement inserting and counting the record.
    assert len(statements) == 2, statements


async def test_the_database_refuses_a_record_whose_customer_is_not_its_subscriptions(
    session: AsyncSession, subscription: Subscription
) -> None:
    # Ingestion never writes one; the key on (subscription_id, customer_id) holds it for any
    # other writer too.
    other = await create_customer(session, dashboard_user_id="43")
    session.add(
        UsageRecord(
            customer_id=other.id,
            subscription_id=subscription.id,
            kind="minutes",
            call_id="call-of-another",
            minutes=Decimal(1),
            occurred_at=TEST_NOW,
            period_start=TEST_NOW,
            source="service",
            request_fingerprint="0" * 64,
            created_at=TEST_NOW,
        )
    )

    with pytest.raises(IntegrityError, match="fk_usage_records_subscription_id_subscriptions"):
        await session.flush()
