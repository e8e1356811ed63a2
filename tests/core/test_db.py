"""The engine (`app.core.db`): what its errors may say."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession


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
