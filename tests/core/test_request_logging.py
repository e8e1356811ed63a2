"""The request id and the request's log line, as the API writes them in production."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.clock import FrozenClock
from app.core.request_logging import REQUEST_ID_HEADER
from app.main import create_app
from app.models import Customer
from tests.conftest import TokenFactory, bearer, make_settings

ACCOUNT = "/subscriptions/api/account/"
PLANS = "/subscriptions/api/plans/"


def logged(output: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    return [line for line in lines if line["event"] == event]


@pytest_asyncio.fixture
async def production_app(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(database_url, redis_url, ENVIRONMENT="production"), clock)
    async with app.router.lifespan_context(app):
        yield app


@pytest_asyncio.fixture
async def production_client(production_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=production_app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_the_callers_request_id_is_answered_and_on_the_requests_line(
    production_client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response = await production_client.get(PLANS, headers={REQUEST_ID_HEADER: "dash-7f3a.42"})

    assert response.headers[REQUEST_ID_HEADER] == "dash-7f3a.42"
    [line] = logged(capsys.readouterr().out, "request")
    assert line["request_id"] == "dash-7f3a.42"
    assert (line["method"], line["path"], line["status"]) == ("GET", PLANS, 200)
    assert line["duration_ms"] >= 0


@pytest.mark.parametrize(
    "sent",
    [None, "", "x" * 129, "has space", "line\r\nbreak", 'quote"d', "ünïcode"],
)
async def test_a_missing_or_insane_request_id_is_replaced_by_a_new_one(
    production_client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str], sent: str | None
) -> None:
    headers = {} if sent is None else {REQUEST_ID_HEADER: sent.encode("utf-8")}

    response = await production_client.get(PLANS, headers=headers)  # type: ignore[arg-type]

    answered = response.headers[REQUEST_ID_HEADER]
    assert answered != sent
    assert len(answered) == 32 and int(answered, 16) >= 0
    [line] = logged(capsys.readouterr().out, "request")
    assert line["request_id"] == answered


async def test_each_request_gets_its_own_id(production_client: httpx.AsyncClient) -> None:
    first = await production_client.get(PLANS)
    second = await production_client.get(PLANS)

    assert first.headers[REQUEST_ID_HEADER] != second.headers[REQUEST_ID_HEADER]


async def test_an_error_answer_carries_the_request_id_too(
    production_client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    response = await production_client.get(ACCOUNT, headers={REQUEST_ID_HEADER: "r-401"})

    assert response.status_code == 401
    assert response.headers[REQUEST_ID_HEADER] == "r-401"
    [line] = logged(capsys.readouterr().out, "request")
    assert (line["request_id"], line["status"]) == ("r-401", 401)


async def test_a_customers_request_line_names_the_user_and_customer_and_no_token(
    production_client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    capsys: pytest.CaptureFixture[str],
) -> None:
    token = make_token("42")

    response = await production_client.get(ACCOUNT, headers=bearer(token))
    # The next caller is anonymous: nothing of the first request's context is left.
    await production_client.get(PLANS)

    assert response.status_code == 200
    output = capsys.readouterr().out
    assert token not in output
    customer_line, anonymous_line = logged(output, "request")
    assert customer_line["user_id"] == "42"
    assert customer_line["customer_id"] == await session.scalar(
        select(Customer.id).where(Customer.dashboard_user_id == "42")
    )
    assert "user_id" not in anonymous_line and "customer_id" not in anonymous_line
