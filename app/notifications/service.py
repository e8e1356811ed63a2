from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.notifications import repository


async def notify(
    session: AsyncSession,
    *,
    customer_id: int,
    kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Write a notification to the outbox in the caller's transaction, once per fact:
    `dedupe_key` names the fact (a trial's end, an invoice's action), so a redelivered
    webhook adds nothing. True when this call wrote it."""
    return await repository.insert_notification_if_new(
        session,
        customer_id=customer_id,
        kind=kind,
        dedupe_key=dedupe_key,
        payload=payload,
        created_at=now,
    )


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    """Notifications by delivery status: `pending` (written, not sent yet), `sent`, `failed`
    (given up)."""
    return await repository.count_by_status(session)
