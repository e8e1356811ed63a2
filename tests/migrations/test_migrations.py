import asyncio
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
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
