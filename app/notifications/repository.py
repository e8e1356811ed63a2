"""Every query of the notifications domain: the `notifications` outbox and each channel's
`notification_deliveries` row."""

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, text, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DriverStatement, StatementTarget
from app.models import Notification, NotificationDelivery
from app.models.notification_delivery import NOTIFICATION_CHANNELS

# One statement: the notification, then a pending delivery per channel when it is new. On the
# driver (a DriverStatement), so the usage paths' transactions can write it too.
_INSERT_NOTIFICATION_IF_NEW = DriverStatement(
    text(
        """
    WITH notification AS (
        INSERT INTO notifications (customer_id, kind, dedupe_key, payload, created_at)
        VALUES (:customer_id, :kind, :dedupe_key, CAST(:payload AS jsonb), :created_at)
        ON CONFLICT (dedupe_key) DO NOTHING
        RETURNING id, customer_id, created_at
    ),
    deliveries AS (
        INSERT INTO notification_deliveries
            (notification_id, customer_id, channel, next_attempt_at, created_at)
        SELECT n.id, n.customer_id, c.channel, n.created_at, n.created_at
        FROM notification n CROSS JOIN unnest(CAST(:channels AS text[])) AS c(channel)
    )
    SELECT id FROM notification
    """
    )
)


async def insert_notification_if_new(
    session: StatementTarget,
    *,
    customer_id: int,
    kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    created_at: datetime,
) -> int | None:
    """The new notification's id, with a pending delivery per channel; None when its key
    already stood (nothing is written then)."""
    row = await _INSERT_NOTIFICATION_IF_NEW.fetchrow(
        session,
        {
            "customer_id": customer_id,
            "kind": kind,
            "dedupe_key": dedupe_key,
            "payload": json.dumps(payload),
            "created_at": created_at,
            "channels": list(NOTIFICATION_CHANNELS),
        },
    )
    return None if row is None else int(row.id)


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(Notification.status, func.count()).group_by(Notification.status)
    )
    return {status: count for status, count in rows.all()}


async def get_notification(
    session: AsyncSession, notification_id: int, *, for_update: bool = False
) -> Notification | None:
    query = select(Notification).where(Notification.id == notification_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def list_notifications(
    session: AsyncSession,
    *,
    status: str | None,
    kind: str | None,
    customer_id: int | None,
    before_id: int | None,
    limit: int,
) -> Sequence[Notification]:
    query = select(Notification)
    if status is not None:
        query = query.where(Notification.status == status)
    if kind is not None:
        query = query.where(Notification.kind == kind)
    if customer_id is not None:
        query = query.where(Notification.customer_id == customer_id)
    if before_id is not None:
        query = query.where(Notification.id < before_id)
    return (await session.scalars(query.order_by(Notification.id.desc()).limit(limit))).all()


async def deliveries_of(
    session: AsyncSession, notification_ids: Sequence[int]
) -> Sequence[NotificationDelivery]:
    if not notification_ids:
        return []
    return (
        await session.scalars(
            select(NotificationDelivery)
            .where(NotificationDelivery.notification_id.in_(notification_ids))
            .order_by(NotificationDelivery.notification_id, NotificationDelivery.channel)
        )
    ).all()


async def lock_first_pending_delivery(
    session: AsyncSession, *, customer_id: int, channel: str
) -> NotificationDelivery | None:
    """The customer's oldest unfinished delivery on the channel, locked: later ones wait for
    it (order per customer), and two workers never claim the same one."""
    return await session.scalar(
        select(NotificationDelivery)
        .where(
            NotificationDelivery.customer_id == customer_id,
            NotificationDelivery.channel == channel,
            NotificationDelivery.status == "pending",
        )
        .order_by(NotificationDelivery.notification_id)
        .limit(1)
        .with_for_update()
    )


async def get_delivery_for_update(
    session: AsyncSession, delivery_id: int
) -> NotificationDelivery | None:
    return await session.scalar(
        select(NotificationDelivery).where(NotificationDelivery.id == delivery_id).with_for_update()
    )


async def customers_with_due_deliveries(
    session: AsyncSession, *, now: datetime, limit: int
) -> list[int]:
    """Customers whose next delivery on a channel (the oldest pending one: later ones wait
    behind it) is due and unclaimed, or claimed by a worker that died (its claim lapsed)."""
    heads = (
        select(NotificationDelivery)
        .where(NotificationDelivery.status == "pending")
        .ext(distinct_on(NotificationDelivery.customer_id, NotificationDelivery.channel))
        .order_by(
            NotificationDelivery.customer_id,
            NotificationDelivery.channel,
            NotificationDelivery.notification_id,
        )
        .subquery()
    )
    rows = await session.scalars(
        select(heads.c.customer_id)
        .where(
            heads.c.next_attempt_at <= now,
            or_(heads.c.claimed_until.is_(None), heads.c.claimed_until <= now),
        )
        .group_by(heads.c.customer_id)
        .order_by(func.min(heads.c.next_attempt_at))
        .limit(limit)
    )
    return list(rows.all())


async def reopen_dead_deliveries(
    session: AsyncSession, *, notification_id: int, now: datetime
) -> int:
    """Due now with a fresh count of attempts; the last error and answer stay for reference."""
    result = await session.execute(
        update(NotificationDelivery)
        .where(
            NotificationDelivery.notification_id == notification_id,
            NotificationDelivery.status == "dead",
        )
        .values(status="pending", attempts=0, next_attempt_at=now, claimed_until=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
