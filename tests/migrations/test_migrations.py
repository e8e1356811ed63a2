import asyncio
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.embedded import create_database, drop_database
from app.core.migrations import alembic_config, upgrade_to_head
from app.models import Base
from tests import infra
from tests.conftest import database_url_for


@pytest.fixture
def empty_database_url(database_server_url: str) -> Iterator[str]:
    name = infra.unique_database_name()
    asyncio.run(create_database(database_server_url, name))
    try:
        yield database_url_for(database_server_url, name)
    finally:
        asyncio.run(drop_database(database_server_url, name))


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _inspect(url: str) -> tuple[list[object], set[str]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            differences = await connection.run_sync(_differences)
            tables = await connection.run_sync(_tables)
    finally:
        await engine.dispose()
    return differences, tables


def test_migrations_build_exactly_the_models_and_downgrade_to_nothing(
    empty_database_url: str,
) -> None:
    upgrade_to_head(empty_database_url)

    differences, tables = asyncio.run(_inspect(empty_database_url))
    assert differences == []
    assert set(Base.metadata.tables) <= tables

    command.downgrade(alembic_config(empty_database_url), "base")

    _, tables_after = asyncio.run(_inspect(empty_database_url))
    assert tables_after <= {"alembic_version"}

    upgrade_to_head(empty_database_url)  # and back up again: downgrade left nothing behind


async def _execute(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            rows: list[tuple[object, ...]] = []
            for statement in statements:
                result = await connection.execute(text(statement))
                if result.returns_rows:
                    rows += [tuple(row) for row in result]
    finally:
        await engine.dispose()
    return rows


def test_usage_records_stored_before_the_one_key_are_kept_and_validated(
    empty_database_url: str,
) -> None:
    config = alembic_config(empty_database_url)
    command.upgrade(config, "0013")
    asyncio.run(
        _execute(
            empty_database_url,
            "INSERT INTO subscription_plans (slug, name, currency, monthly_price, yearly_price, "
            "included_minutes, max_agents, overage_rate_per_minute, overage_rate_per_agent) "
            "VALUES ('basic', 'Basic', 'usd', 1000, 10000, 100, 5, 0.05, 10)",
            "INSERT INTO customers (dashboard_user_id) VALUES ('42')",
            "INSERT INTO subscriptions (customer_id, plan_id, billing_cycle, status) "
            "SELECT c.id, p.id, 'monthly', 'active' FROM customers c, subscription_plans p",
            "INSERT INTO usage_records (customer_id, subscription_id, kind, call_id, minutes, "
            "occurred_at, period_start, source, request_fingerprint, created_at) "
            "SELECT customer_id, id, 'minutes', 'call-1', 1.5, now(), now(), 'service', "
            "repeat('0', 64), now() FROM subscriptions",
        )
    )

    command.upgrade(config, "head")

    rows = asyncio.run(
        _execute(
            empty_database_url,
            "SELECT call_id FROM usage_records",
            "SELECT conname, convalidated FROM pg_constraint "
            "WHERE conrelid = 'usage_records'::regclass AND contype = 'f'",
        )
    )
    assert rows == [("call-1",), ("fk_usage_records_subscription_id_subscriptions", True)]
