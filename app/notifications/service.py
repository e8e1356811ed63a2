"""The outbox: `notify` writes a notification (and a pending delivery per channel) in the
caller's transaction, so a rolled-back cause sends nothing and a committed one is delivered
by the worker (`delivery`), never lost. Operators list them and resend the dead ones."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import StatementTarget
from app.models import Notification, NotificationDelivery
from app.notifications import repository
from app.notifications.errors import NotificationNotDead, NotificationNotFound


@dataclass(frozen=True, slots=True)
class NotificationWithDeliveries:
    notification: Notification
    deliveries: Sequence[NotificationDelivery]


async def notify(
    session: StatementTarget,
    *,
    customer_id: int,
    kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    now: datetime,
) -> bool:
    """Write a notification to the outbox in the caller's transaction, once per fact:
    `dedupe_key` names the fact (a trial's end, an invoice's action), so a redelivered
    webhook adds nothing. True when this call wrote it.

    `payload` is what the email template and the dashboard event's `data` show: ids, amounts
    in minor units with their currency, ISO dates; nothing secret."""
    notification_id = await repository.insert_notification_if_new(
        session,
        customer_id=customer_id,
        kind=kind,
        dedupe_key=dedupe_key,
        payload=payload,
        created_at=now,
    )
    return notification_id is not None


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    """Notifications by delivery status: `pending` (a channel still to deliver), `sent`,
    `dead` (a channel gave up)."""
    return await repository.count_by_status(session)


async def _with_deliveries(
    session: AsyncSession, notifications: Sequence[Notification]
) -> list[NotificationWithDeliveries]:
    deliveries = await repository.deliveries_of(session, [n.id for n in notifications])
    by_notification: dict[int, list[NotificationDelivery]] = {}
    for delivery in deliveries:
        by_notification.setdefault(delivery.notification_id, []).append(delivery)
    return [
        NotificationWithDeliveries(notification, by_notification.get(notification.id, []))
        for notification in notifications
    ]


async def list_notifications(
    session: AsyncSession,
    *,
    status: str | None,
    kind: str | None,
    customer_id: int | None,
    limit: int,
    before_id: int | None = None,
) -> list[NotificationWithDeliveries]:
    """Notifications newest first, each with its channels' state; filters are optional.
    `before_id` continues after a previous page (the last id it showed)."""
    notifications = await repository.list_notifications(
        session,
        status=status,
        kind=kind,
        customer_id=customer_id,
        before_id=before_id,
        limit=limit,
    )
    return await _with_deliveries(session, notifications)


async def resend_notification(
    session: AsyncSession, *, notification_id: int, now: datetime
) -> NotificationWithDeliveries:
    """Deliver a dead notification again: its dead channels are due now with a fresh count
    of attempts (the channels already sent are not sent twice), under the same event id.
    404 `notification_not_found`; 409 `notification_not_dead` unless it is dead. The
    worker's sweeper picks it up within seconds of the commit."""
    notification = await repository.get_notification(session, notification_id, for_update=True)
    if notification is None:
        raise NotificationNotFound()
    if notification.status != "dead":
        raise NotificationNotDead(details={"status": notification.status})
    await repository.reopen_dead_deliveries(session, notification_id=notification.id, now=now)
    notification.status = "pending"
    notification.sent_at = None
    await session.flush()
    [resent] = await _with_deliveries(session, [notification])
    return resent
