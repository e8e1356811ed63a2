from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import UsageAlert

# The unique constraint that makes an alert once per period, kind, resource and threshold.
_ONCE_PER_PERIOD = ["subscription_id", "period_start", "kind", "resource", "threshold"]


async def insert_once(
    session: AsyncSession, alerts: Sequence[dict[str, Any]]
) -> Sequence[UsageAlert]:
    """Insert the alerts that do not exist yet; returns those that were new.

    ON CONFLICT DO NOTHING on the unique constraint: two requests crossing the same threshold
    at once leave one row, and the second one's insert waits for the first to commit.
    """
    rows = await session.scalars(
        insert(UsageAlert)
        .values(list(alerts))
        .on_conflict_do_nothing(index_elements=_ONCE_PER_PERIOD)
        .returning(UsageAlert)
    )
    return rows.all()


async def list_for_customer(
    session: AsyncSession,
    *,
    customer_id: int,
    acknowledged: bool | None,
    before_id: int | None,
    limit: int,
) -> Sequence[UsageAlert]:
    query = select(UsageAlert).where(UsageAlert.customer_id == customer_id)
    if acknowledged is not None:
        query = query.where(
            UsageAlert.acknowledged_at.is_not(None)
            if acknowledged
            else UsageAlert.acknowledged_at.is_(None)
        )
    if before_id is not None:
        query = query.where(UsageAlert.id < before_id)
    return (await session.scalars(query.order_by(UsageAlert.id.desc()).limit(limit))).all()


async def acknowledge(
    session: AsyncSession, *, customer_id: int, alert_id: int, now: datetime
) -> UsageAlert | None:
    """Mark the customer's alert acknowledged (the first time counts); None if it is not
    the customer's."""
    return await session.scalar(
        update(UsageAlert)
        .where(UsageAlert.id == alert_id, UsageAlert.customer_id == customer_id)
        .values(acknowledged_at=func.coalesce(UsageAlert.acknowledged_at, now))
        .returning(UsageAlert)
    )
