from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DriverStatement, StatementTarget
from app.models import UsageAlert

# The unique constraint that makes an alert once per period, kind, resource and threshold.
_ONCE_PER_PERIOD = ["subscription_id", "period_start", "kind", "resource", "threshold"]


@dataclass(frozen=True, slots=True)
class RaisedAlert:
    """An alert just inserted: what its notice and its metric need."""

    id: int
    customer_id: int
    subscription_id: int
    period_start: datetime
    kind: str
    resource: str
    threshold: int
    priority: str
    action_required: bool
    message: str


_ALERT_COLUMNS = (
    "customer_id, subscription_id, period_start, kind, resource, threshold, priority, "
    "action_required, message"
)
# ON CONFLICT DO NOTHING on the unique constraint: two requests crossing the same threshold
# at once leave one row, and the second one's insert waits for the first to commit. On the
# driver (a DriverStatement): the usage paths raise alerts in their own transactions.
_INSERT_ONCE = DriverStatement(
    text(
        f"""
    INSERT INTO usage_alerts ({_ALERT_COLUMNS}, created_at)
    SELECT * FROM unnest(
        CAST(:customer_ids AS bigint[]), CAST(:subscription_ids AS bigint[]),
        CAST(:period_starts AS timestamptz[]), CAST(:kinds AS text[]),
        CAST(:resources AS text[]), CAST(:thresholds AS integer[]),
        CAST(:priorities AS text[]), CAST(:action_required AS boolean[]),
        CAST(:messages AS text[]), CAST(:created_at AS timestamptz[])
    )
    ON CONFLICT ({", ".join(_ONCE_PER_PERIOD)}) DO NOTHING
    RETURNING id, {_ALERT_COLUMNS}
    """  # noqa: S608 (built from this module's constants, never from input)
    )
)


async def insert_once(
    session: StatementTarget, alerts: Sequence[dict[str, Any]]
) -> list[RaisedAlert]:
    """Insert the alerts that do not exist yet; returns those that were new."""
    rows = await _INSERT_ONCE.fetch(
        session,
        {
            "customer_ids": [alert["customer_id"] for alert in alerts],
            "subscription_ids": [alert["subscription_id"] for alert in alerts],
            "period_starts": [alert["period_start"] for alert in alerts],
            "kinds": [alert["kind"] for alert in alerts],
            "resources": [alert["resource"] for alert in alerts],
            "thresholds": [alert["threshold"] for alert in alerts],
            "priorities": [alert["priority"] for alert in alerts],
            "action_required": [alert["action_required"] for alert in alerts],
            "messages": [alert["message"] for alert in alerts],
            "created_at": [alert["created_at"] for alert in alerts],
        },
    )
    return [RaisedAlert(**dict(row.items())) for row in rows]


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
