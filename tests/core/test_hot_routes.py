"""The hot routes (app/core/hot_routes.py) answer exactly as FastAPI's own handling of the same
route does, and a dead pooled connection on the driver's pool costs a request nothing."""

from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import Depends, FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.hot_routes import HotRoutes, UnsupportedHotRoute
from app.core.routing import SlashTolerantRouter
from app.main import HOT_ROUTES
from app.models import Customer, SubscriptionPlan
from tests.conftest import TokenFactory, bearer
from tests.factories import create_customer, create_plan, create_subscription
from tests.lost_connections import kill_pooled_connections
from tests.usage.helpers import BATCH, ENTITLEMENTS, USAGE

WEBHOOK = "/subscriptions/api/stripe-webhook/"


@pytest_asyncio.fixture
async def plan(session: AsyncSession) -> SubscriptionPlan:
    return await create_plan(session, included_minutes=100, max_agents=5)


@pytest_asyncio.fixture
async def customer(session: AsyncSession, plan: SubscriptionPlan) -> Customer:
    customer = await create_customer(session, dashboard_user_id="42")
    await create_subscription(session, customer=customer, plan=plan)
    return customer


def _not_overridden() -> None:
    """A dependency no route has: overriding it changes no route's behaviour, but any
    override at all sends every request through FastAPI's own routing."""


def _answer(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    headers = {
        name: value
        for name, value in response.headers.items()
        # A new one per request.
        if name != "x-request-id"
    }
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return response.status_code, body, headers


def _requests(make_token: TokenFactory) -> list[tuple[str, str, dict[str, Any]]]:
    service = bearer(make_token("9001", roles=["service"]))
    user = bearer(make_token("42"))
    json_headers = {"Content-Type": "application/json"}
    return [
        ("POST", USAGE, {"json": {"call_id": "c-1", "minutes_used": "2.5"}, "headers": user}),
        ("POST", USAGE, {"json": {"call_id": "c-dup", "minutes_used": 1}, "headers": user}),
        ("POST", USAGE, {"json": {"call_id": "c-dup", "minutes_used": 1}, "headers": user}),
        ("POST", USAGE, {"json": {"call_id": "c-dup", "minutes_used": 2}, "headers": user}),
        ("POST", USAGE, {"json": {"minutes_used": -1}, "headers": user}),
        ("POST", USAGE, {"json": {"call_id": "x", "minutes_used": 1, "customer_id": "7"},
                         "headers": user}),
        ("POST", USAGE, {"content": b'{"call_id": ', "headers": {**user, **json_headers}}),
        ("POST", USAGE, {"content": b"[" * 5000, "headers": {**user, **json_headers}}),
        ("POST", USAGE, {"content": b'{"call_id": "t"}', "headers": {**user,
                         "Content-Type": "text/plain"}}),
        ("POST", USAGE, {"content": b"", "headers": {**user, **json_headers}}),
        ("POST", USAGE, {"json": {"call_id": "nobody", "minutes_used": 1}}),
        ("POST", USAGE, {"json": {"call_id": "c", "minutes_used": 1},
                         "headers": {"Authorization": "Basic abc"}}),
        ("POST", USAGE.rstrip("/"), {"json": {"call_id": "c-1", "agents_active": 3},
                                     "headers": service | {}}),
        ("POST", BATCH, {"json": {"records": [{"call_id": "b-1", "minutes_used": 1,
                                               "customer_id": "42"}, {"minutes_used": "x"}]},
                         "headers": service}),
        ("POST", BATCH, {"json": {"records": []}, "headers": service}),
        ("GET", ENTITLEMENTS, {"headers": user}),
        ("GET", ENTITLEMENTS, {"params": {"customer_id": "42"}, "headers": service}),
        ("GET", ENTITLEMENTS, {"params": {"customer_id": "404"}, "headers": service}),
        ("GET", ENTITLEMENTS, {"params": {"customer_id": ""}, "headers": service}),
        ("GET", ENTITLEMENTS, {"params": {"customer_id": "7"}, "headers": user}),
        ("GET", ENTITLEMENTS, {}),
        ("GET", ENTITLEMENTS, {"params": {"customer_id": "4" * 300}, "headers": service}),
        ("GET", ENTITLEMENTS, {"params": [("customer_id", "42"), ("customer_id", "7")],
                               "headers": service}),
        ("POST", BATCH, {"json": {"records": [{"call_id": "n\x00", "minutes_used": 1,
                                               "customer_id": "42"},
                                              {"agents_active": 2, "customer_id": "42"},
                                              5, None, [], {"agents_active": True}]},
                         "headers": service}),
        ("GET", USAGE, {"headers": user}),
        ("POST", WEBHOOK, {"content": b"{}", "headers": {"Stripe-Signature": "t=1,v1=00"}}),
        ("POST", WEBHOOK, {"content": b"{}"}),
    ]  # fmt: skip


async def _send_all(
    client: httpx.AsyncClient, requests: list[tuple[str, str, dict[str, Any]]]
) -> list[tuple[int, Any, dict[str, str]]]:
    return [
        _answer(await client.request(method, path, **options)) for method, path, options in requests
    ]


# What the requests write, emptied between the two rounds so both start from the same state.
_WRITTEN = (
    "usage_records, usage_period_totals, usage_daily_totals, usage_alerts, "
    "notification_deliveries, notifications"
)


async def test_hot_routes_answer_as_fastapi_does(
    app: FastAPI,
    client: httpx.AsyncClient,
    session: AsyncSession,
    customer: Customer,
    make_token: TokenFactory,
) -> None:
    requests = _requests(make_token)

    hot = await _send_all(client, requests)
    await session.execute(text(f"TRUNCATE {_WRITTEN} RESTART IDENTITY"))
    await session.commit()
    app.dependency_overrides[_not_overridden] = _not_overridden
    try:
        routed = await _send_all(client, requests)
    finally:
        app.dependency_overrides.clear()

    assert [answer[0] for answer in hot][:4] == [201, 201, 200, 409]
    assert {422, 401, 404} <= {answer[0] for answer in hot}
    # Request by request: the same status, body and headers.
    for request, hot_answer, routed_answer in zip(requests, hot, routed, strict=True):
        assert hot_answer == routed_answer, request


async def test_a_hot_route_is_timed_under_its_route_template(
    client: httpx.AsyncClient, customer: Customer, make_token: TokenFactory
) -> None:
    from app.core.metrics import HTTP_REQUEST_DURATION

    labels = ("POST", "/subscriptions/api/usage", "201")
    before = HTTP_REQUEST_DURATION.labels(*labels)._sum.get()

    response = await client.post(
        USAGE.rstrip("/"),
        json={"call_id": "timed", "minutes_used": 1},
        headers=bearer(make_token("42")),
    )

    assert response.status_code == 201
    assert HTTP_REQUEST_DURATION.labels(*labels)._sum.get() > before


async def test_pooled_connections_that_died_are_replaced_without_failing_a_request(
    client: httpx.AsyncClient,
    session: AsyncSession,
    customer: Customer,
    make_token: TokenFactory,
) -> None:
    user = bearer(make_token("42"))
    first = await client.post(USAGE, json={"call_id": "a", "minutes_used": 1}, headers=user)
    assert first.status_code == 201

    await kill_pooled_connections(session)
    read = await client.get(ENTITLEMENTS, headers=user)
    await kill_pooled_connections(session)
    written = await client.post(USAGE, json={"call_id": "b", "minutes_used": 1}, headers=user)
    after = await client.get(ENTITLEMENTS, headers=user)

    assert read.status_code == 200, read.text
    assert read.json()["entitlements"]["minutes_used"] == "1"
    assert written.status_code == 201, written.text
    assert after.json()["entitlements"]["minutes_used"] == "2"


def test_a_route_the_plan_cannot_serve_stops_the_start() -> None:
    router = SlashTolerantRouter()

    def synchronous() -> int:
        return 1

    @router.get("/sync/")
    async def uses_a_thread(value: int = Depends(synchronous)) -> dict[str, int]:
        return {"value": value}

    api = FastAPI()
    api.include_router(router)

    with pytest.raises(UnsupportedHotRoute, match="not async"):
        HotRoutes(api, api=api, routes=["GET /sync/"])
    with pytest.raises(UnsupportedHotRoute, match="no such route"):
        HotRoutes(api, api=api, routes=["GET /nowhere/"])


def test_every_hot_route_of_the_service_is_served_by_its_plan(app: FastAPI) -> None:
    # Building the table is what the app's start does; it raises for a route it cannot serve.
    table = HotRoutes(app, api=app, routes=HOT_ROUTES).table
    assert sorted(" ".join(key) for key in table) == sorted(HOT_ROUTES)
