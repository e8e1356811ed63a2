from datetime import datetime
from typing import Any

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
