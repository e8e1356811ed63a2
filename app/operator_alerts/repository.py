from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import OperatorAlert


async def insert_alert_if_new(
    session: AsyncSession,
    *,
    kind: str,
    severity: str,
    message: str,
    details: dict[str, Any],
    dedupe_key: str,
    created_at: datetime,
) -> bool:
    """True when this insert wrote the alert; False when one with the key already stood."""
    result = await session.execute(
        insert(OperatorAlert)
        .values(
            kind=kind,
            severity=severity,
            message=message,
            details=details,
            dedupe_key=dedupe_key,
            created_at=created_at,
        )
        .on_conflict_do_nothing(index_elements=[OperatorAlert.dedupe_key])
        .returning(OperatorAlert.id)
    )
    return result.scalar_one_or_none() is not None


async def acknowledge(session: AsyncSession, *, alert_id: int, at: datetime) -> bool | None:
    """True when this call acknowledged the alert, False when it already was, None when there
    is no such alert. One statement, so two operators at once acknowledge it once."""
    result = await session.execute(
        update(OperatorAlert)
        .where(OperatorAlert.id == alert_id, OperatorAlert.acknowledged_at.is_(None))
        .values(acknowledged_at=at)
        .returning(OperatorAlert.id)
    )
    if result.scalar_one_or_none() is not None:
        return True
    exists = await session.get(OperatorAlert, alert_id)
    return None if exists is None else False
