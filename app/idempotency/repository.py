from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import IdempotencyKey


async def claim(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    request_fingerprint: str,
    now: datetime,
    locked_until: datetime,
    expires_at: datetime,
) -> bool:
    """Take the key for this request; False when another request holds it already.

    ON CONFLICT DO NOTHING on (scope, key): of two requests with one key arriving together,
    exactly one claims it.
    """
    result = await session.execute(
        insert(IdempotencyKey)
        .values(
            scope=scope,
            key=key,
            request_fingerprint=request_fingerprint,
            state="in_progress",
            locked_until=locked_until,
            created_at=now,
            expires_at=expires_at,
        )
        .on_conflict_do_nothing(index_elements=[IdempotencyKey.scope, IdempotencyKey.key])
        .returning(IdempotencyKey.id)
    )
    return result.first() is not None


async def get_for_update(session: AsyncSession, *, scope: str, key: str) -> IdempotencyKey | None:
    return await session.scalar(
        select(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .with_for_update()
    )


async def complete(
    session: AsyncSession, *, scope: str, key: str, status: int, body: dict[str, Any]
) -> None:
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(state="completed", response_status=status, response_body=body)
    )


async def forget(session: AsyncSession, *, scope: str, key: str) -> None:
    await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
    )


async def delete_expired(session: AsyncSession, *, now: datetime) -> int:
    result = await session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < now))
    return int(getattr(result, "rowcount", 0) or 0)
