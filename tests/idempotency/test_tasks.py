from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.idempotency import repository
from app.idempotency.middleware import IN_PROGRESS_LEASE, KEY_LIFETIME
from app.idempotency.tasks import purge_expired_idempotency_keys
from app.models import IdempotencyKey
from tests.running_jobs import job_ctx


def _ctx(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> dict[str, Any]:
    return job_ctx(settings=settings, clock=clock, sessionmaker=sessionmaker)


async def _remember(
    sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock, key: str
) -> None:
    """A key as the middleware leaves it after answering: claimed now, kept KEY_LIFETIME."""
    now = clock.now()
    scope = "42:/subscriptions/api/subscribe"
    async with sessionmaker.begin() as session:
        assert await repository.claim(
            session,
            scope=scope,
            key=key,
            request_fingerprint="0" * 64,
            now=now,
            locked_until=now + IN_PROGRESS_LEASE,
            expires_at=now + KEY_LIFETIME,
        )
        await repository.complete(session, scope=scope, key=key, status=200, body={"ok": True})


async def test_the_purge_deletes_keys_past_their_lifetime_and_keeps_fresh_ones(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    settings: Settings,
) -> None:
    await _remember(sessionmaker, clock, "first-try")
    clock.advance(KEY_LIFETIME - timedelta(hours=1))
    await _remember(sessionmaker, clock, "an-hour-ago")
    clock.advance(timedelta(hours=1, seconds=1))  # "first-try" is now a second past its lifetime

    purged = await purge_expired_idempotency_keys(_ctx(settings, sessionmaker, clock))
    purged_again = await purge_expired_idempotency_keys(_ctx(settings, sessionmaker, clock))

    assert (purged, purged_again) == (1, 0)
    assert list(await session.scalars(select(IdempotencyKey.key))) == ["an-hour-ago"]
