from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.models import Customer, Subscription, UsageAlert
from tests.conftest import TEST_NOW, TokenFactory, bearer, make_settings
from tests.factories import PERIOD_START, create_customer, create_plan, create_subscription
from tests.usage.helpers import ALERTS, call, post_usage


@pytest_asyncio.fixture
async def customer(session: AsyncSession) -> Customer:
    return await create_customer(session, dashboard_user_id="42")


@pytest_asyncio.fixture
async def subscription(session: AsyncSession, customer: Customer) -> Subscription:
    plan = await create_plan(session, included_minutes=100, max_agents=4)
    return await create_subscription(session, customer=customer, plan=plan)


@pytest.fixture
def user(make_token: TokenFactory) -> str:
    return make_token("42")


async def add_alert(
    session: AsyncSession, subscription: Subscription, threshold: int, **overrides: Any
) -> UsageAlert:
    alert = UsageAlert(
        **{
            "customer_id": subscription.customer_id,
            "subscription_id": subscription.id,
            "period_start": PERIOD_START,
            "kind": "usage_threshold",
            "resource": "minutes",
            "threshold": threshold,
            "priority": "medium",
            "message": f"{threshold}%",
            "created_at": TEST_NOW,
            **overrides,
        }
    )
    session.add(alert)
    await session.commit()
    return alert


async def list_alerts(client: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    response = await client.get(ALERTS, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is True
    return body


async def test_alerts_raised_by_usage_are_listed_newest_first(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    await post_usage(client, user, call("a", 85))
    await post_usage(client, user, agents_active=5)

    body = await list_alerts(client, user)

    assert [(a["kind"], a["resource"], a["threshold"]) for a in body["alerts"]] == [
        ("overage", "", 0),
        ("usage_threshold", "agents", 100),
        ("usage_threshold", "agents", 80),
        ("usage_threshold", "minutes", 80),
    ]
    newest = body["alerts"][0]
    assert newest["priority"] == "high"
    assert newest["subscription_id"] == subscription.id
    assert newest["period_start"] == "2026-11-01T00:00:00Z"
    assert newest["created_at"] == "2026-11-25T12:00:00Z"
    assert newest["acknowledged"] is False
    assert body["next_cursor"] is None


async def test_alerts_page_with_a_cursor_and_filter_on_acknowledgement(
    client: httpx.AsyncClient, session: AsyncSession, subscription: Subscription, user: str
) -> None:
    first = await add_alert(session, subscription, 50, acknowledged_at=TEST_NOW)
    second = await add_alert(session, subscription, 80)
    third = await add_alert(session, subscription, 100)

    page = await list_alerts(client, user, limit=2)
    rest = await list_alerts(client, user, limit=2, cursor=page["next_cursor"])
    open_alerts = await list_alerts(client, user, acknowledged="false")
    done = await list_alerts(client, user, acknowledged="true")

    assert [a["id"] for a in page["alerts"]] == [third.id, second.id]
    assert [a["id"] for a in rest["alerts"]] == [first.id]
    assert rest["next_cursor"] is None
    assert [a["id"] for a in open_alerts["alerts"]] == [third.id, second.id]
    assert [a["id"] for a in done["alerts"]] == [first.id]
    assert done["alerts"][0]["acknowledged"] is True


async def test_an_unknown_cursor_is_422(
    client: httpx.AsyncClient, subscription: Subscription, user: str
) -> None:
    response = await client.get(ALERTS, params={"cursor": "abc"}, headers=bearer(user))
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_cursor"


async def test_a_user_sees_only_their_own_alerts(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    make_token: TokenFactory,
) -> None:
    await add_alert(session, subscription, 80)
    await create_customer(session, dashboard_user_id="7")

    assert (await list_alerts(client, make_token("7")))["alerts"] == []
    assert (await list_alerts(client, make_token("9002")))["alerts"] == []


async def test_acknowledging_an_alert_once_sticks(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    user: str,
    clock: FrozenClock,
) -> None:
    alert = await add_alert(session, subscription, 80)
    path = f"{ALERTS}{alert.id}/acknowledge/"

    first = await client.post(path, headers=bearer(user))
    clock.advance(timedelta(minutes=1))
    again = await client.post(path, headers=bearer(user))

    assert first.status_code == 200, first.text
    assert first.json()["alert"]["acknowledged"] is True
    assert first.json()["alert"]["acknowledged_at"] == "2026-11-25T12:00:00Z"
    assert again.status_code == 200, again.text
    assert again.json()["alert"]["acknowledged_at"] == "2026-11-25T12:00:00Z"


async def test_acknowledging_another_customers_alert_is_404(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    make_token: TokenFactory,
) -> None:
    alert = await add_alert(session, subscription, 80)
    await create_customer(session, dashboard_user_id="7")

    other = await client.post(f"{ALERTS}{alert.id}/acknowledge/", headers=bearer(make_token("7")))
    stranger = await client.post(
        f"{ALERTS}{alert.id}/acknowledge/", headers=bearer(make_token("9002"))
    )
    missing = await client.post(
        f"{ALERTS}{alert.id + 1}/acknowledge/", headers=bearer(make_token("42"))
    )

    for response in (other, stranger, missing):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "alert_not_found"
    assert (await list_alerts(client, make_token("42")))["alerts"][0]["acknowledged"] is False


async def test_a_service_token_lists_and_acknowledges_for_a_named_customer(
    client: httpx.AsyncClient,
    session: AsyncSession,
    subscription: Subscription,
    make_token: TokenFactory,
) -> None:
    alert = await add_alert(session, subscription, 80)
    service = make_token("9007", roles=["service"])

    listed = await list_alerts(client, service, customer_id="42")
    acknowledged = await client.post(
        f"{ALERTS}{alert.id}/acknowledge/", params={"customer_id": "42"}, headers=bearer(service)
    )
    unknown = await client.get(ALERTS, params={"customer_id": "9"}, headers=bearer(service))

    assert [a["id"] for a in listed["alerts"]] == [alert.id]
    assert acknowledged.status_code == 200
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "customer_not_found"


async def test_alerts_need_a_token(client: httpx.AsyncClient) -> None:
    assert (await client.get(ALERTS)).status_code == 401
    assert (await client.post(f"{ALERTS}1/acknowledge/")).status_code == 401


class TestConfiguredThresholds:
    @pytest.fixture
    def settings(self, database_url: str, redis_url: str) -> Settings:
        return make_settings(database_url, redis_url, USAGE_ALERT_THRESHOLDS="50,90")

    async def test_alerts_fire_at_the_configured_thresholds(
        self, client: httpx.AsyncClient, subscription: Subscription, user: str
    ) -> None:
        await post_usage(client, user, call("a", 60))
        await post_usage(client, user, call("b", 35))

        body = await list_alerts(client, user)

        assert [(a["resource"], a["threshold"]) for a in body["alerts"]] == [
            ("minutes", 90),
            ("minutes", 50),
        ]
