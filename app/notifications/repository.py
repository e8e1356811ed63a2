from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Notification


async def insert_notification_if_new(
    session: AsyncSession,
    *,
    customer_id: int,
    kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    created_at: datetime,
) -> bool:
    """True when this insert wrote the notification; False when its key already stood."""
    result = await session.execute(
        insert(Notification)
        .values(
            customer_id=customer_id,
            kind=kind,
            dedupe_key=dedupe_key,
            payload=payload,
            created_at=created_at,
        )
        .on_conflict_do_nothing(index_elements=[Notification.dedupe_key])
        .returning(Notification.id)
    )
    return result.scalar_one_or_none() is not None


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Notification.status, func.count()).group_by(Notification.status)
    )
    return {status: count for status, count in rows.all()}
