"""What a PostgreSQL restart or a dropped proxy connection does to the hot paths' pool."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DRIVER_POOL_APPLICATION_NAME


async def kill_pooled_connections(session: AsyncSession) -> None:
    """Terminate the hot paths' idle connections, as a server restart would."""
    killed = await session.scalar(
        text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = :name"
        ),
        {"name": DRIVER_POOL_APPLICATION_NAME},
    )
    assert killed


@contextmanager
def answer_lost_once(monkeypatch: pytest.MonkeyPatch, statement_start: str) -> Iterator[list[str]]:
    """The first statement starting with `statement_start` runs (and, autocommitted, commits),
    then its connection is lost before the answer arrives. Yields the statements so lost."""
    lost: list[str] = []
    fetch = asyncpg.connection.Connection.fetch

    async def fetch_then_lose(
        self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any
    ) -> Any:
        rows = await fetch(self, query, *args, **kwargs)
        if not lost and query.lstrip().startswith(statement_start):
            lost.append(query)
            self.terminate()
            raise asyncpg.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation"
            )
        return rows

    with monkeypatch.context() as patch:
        patch.setattr(asyncpg.connection.Connection, "fetch", fetch_then_lose)
        yield lost
