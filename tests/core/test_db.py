"""The engine (`app.core.db`): what its errors may say."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import db
from app.core.config import Settings
from app.core.db import create_engine


async def test_a_failing_statements_error_does_not_contain_its_bound_values(
    session: AsyncSession,
) -> None:
    card = "4242424242424242"

    with pytest.raises(DBAPIError) as raised:
        # Fails at run time (division by zero), after the value was bound.
        await session.execute(text("SELECT length(CAST(:card AS text)) / 0"), {"card": card})

    message = str(raised.value)
    assert "division by zero" in message
    assert card not in message
    assert "hidden due to hide_parameters" in message


async def test_a_connection_that_died_while_idle_is_replaced_before_use(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(settings)
    try:
        async with engine.connect() as killer:
            async with engine.connect() as victim:
                victim_pid = (await victim.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            # Back in the pool, it dies while idle (a server restart, a proxy's timeout).
            await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim_pid})
        monkeypatch.setattr(db, "PING_CONNECTIONS_IDLE_FOR_SECONDS", 0.0)

        # The pool hands out its oldest connection first: the dead one, pinged and replaced.
        async with engine.connect() as connection:
            pid = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()

        assert pid != victim_pid
    finally:
        await engine.dispose()
