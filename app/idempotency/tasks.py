from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.idempotency import repository


async def purge_expired_idempotency_keys(ctx: dict[str, Any]) -> int:
    """Drop `Idempotency-Key` records past their 24 hours; a key is free again after that."""
    sessionmaker: async_sessionmaker[AsyncSession] = ctx["sessionmaker"]
    clock: Clock = ctx["clock"]
    async with sessionmaker.begin() as session:
        return await repository.delete_expired(session, now=clock.now())
