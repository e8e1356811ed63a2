"""Calls and reads for the usage and alerts tests (their rows come from tests.factories)."""

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import patch

import httpx
from fastapi import FastAPI
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DriverStatement
from app.models import UsageDailyTotals, UsagePeriodTotals
from tests.conftest import TEST_NOW, bearer
from tests.factories import PERIOD_START

USAGE = "/subscriptions/api/usage/"
BATCH = "/subscriptions/api/usage/batch/"
ENTITLEMENTS = "/subscriptions/api/entitlements/"
ALERTS = "/subscriptions/api/alerts/"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def post_usage(
    client: httpx.AsyncClient, token: str, body: dict[str, Any] | None = None, **fields: Any
) -> httpx.Response:
    return await client.post(USAGE, json={**(body or {}), **fields}, headers=bearer(token))


def call(call_id: str, minutes: str | float | int = 5, **fields: Any) -> dict[str, Any]:
    return {"call_id": call_id, "minutes_used": minutes, **fields}


async def period_totals(
    session: AsyncSession, subscription_id: int, period_start: datetime = PERIOD_START
) -> UsagePeriodTotals | None:
    return await session.scalar(
        select(UsagePeriodTotals)
        .where(
            UsagePeriodTotals.subscription_id == subscription_id,
            UsagePeriodTotals.period_start == period_start,
        )
        .execution_options(populate_existing=True)
    )


async def daily_totals(session: AsyncSession, subscription_id: int) -> dict[str, Decimal]:
    rows = await session.scalars(
        select(UsageDailyTotals)
        .where(UsageDailyTotals.subscription_id == subscription_id)
        .order_by(UsageDailyTotals.day)
        .execution_options(populate_existing=True)
    )
    return {row.day.isoformat(): row.minutes_used for row in rows}


@contextmanager
def counted_statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app sends while the block runs (BEGIN and COMMIT aside),
    through SQLAlchemy or straight to the driver (`DriverStatement`)."""
    statements: list[str] = []
    engine = app.state.engine.sync_engine

    def count(*args: Any) -> None:
        statements.append(args[2])

    def counting(run: Any) -> Any:
        async def counted(self: DriverStatement, *args: Any) -> Any:
            statements.append(self.sql)
            return await run(self, *args)

        return counted

    event.listen(engine, "before_cursor_execute", count)
    try:
        with (
            patch.object(DriverStatement, "fetch", counting(DriverStatement.fetch)),
            # fetchrow runs fetch.
            patch.object(DriverStatement, "execute", counting(DriverStatement.execute)),
        ):
            yield statements
    finally:
        event.remove(engine, "before_cursor_execute", count)


async def get_entitlements(client: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    response = await client.get(ENTITLEMENTS, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is True
    entitlements: dict[str, Any] = body["entitlements"]
    return entitlements


def decision(entitlements: dict[str, Any]) -> tuple[bool, bool, str | None]:
    """The quota check's verdict: (call_allowed, suspended, reason)."""
    return entitlements["call_allowed"], entitlements["suspended"], entitlements["reason"]


def minutes_ago(minutes: float) -> str:
    return (TEST_NOW - timedelta(minutes=minutes)).isoformat()
