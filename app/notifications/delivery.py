"""Delivering the outbox: each channel of each notification at least once, in order per
customer, with its outcome kept.

For one customer and one channel, the oldest `pending` delivery goes first: it is claimed in
a short transaction (attempt counted, `claimed_until` set), sent with no transaction open,
and its outcome recorded in a second one. A later notification never overtakes an earlier
one that is still retrying on that channel; once the earlier one is sent, skipped or dead,
the next follows. A worker that dies between claim and record leaves the claim to lapse, and
the delivery is sent again (the dashboard drops the duplicate by event id). Failures back
off from 30 seconds to an hour, up to NOTIFICATION_MAX_ATTEMPTS, then `dead`.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.metrics import NOTIFICATION_DELIVERIES
from app.customers import service as customers_service
from app.notifications import repository
from app.notifications.channels import Channel, OutgoingNotice, SendOutcome

logger = structlog.get_logger(__name__)

# Longer than a send can take (SMTP and HTTP time out well before).
CLAIM_LEASE = timedelta(minutes=5)
FIRST_RETRY_DELAY = timedelta(seconds=30)
LONGEST_RETRY_DELAY = timedelta(hours=1)


def event_id(notification_id: int) -> str:
    """The notification's id for its receivers: the same on every retry and resend."""
    return f"ntf_{notification_id}"


def retry_delay(attempts: int) -> timedelta:
    """After the `attempts`-th failure: 30 s, 1 min, 2 min, ... up to an hour."""
    delay: timedelta = FIRST_RETRY_DELAY * 2 ** max(attempts - 1, 0)
    return min(delay, LONGEST_RETRY_DELAY)


@dataclass(frozen=True, slots=True)
class _Claim:
    delivery_id: int
    notification_id: int
    attempts: int
    notice: OutgoingNotice


@dataclass(frozen=True, slots=True)
class DeliveryRun:
    sent: int
    # The earliest moment a delivery of this customer is due again (a retry), if any.
    next_due_at: datetime | None


async def _claim_next(
    session: AsyncSession, *, customer_id: int, channel: str, now: datetime
) -> _Claim | datetime | None:
    """The claim of the channel's next delivery for the customer; or when it is due (not
    yet, or claimed by another worker); or None when nothing is left."""
    delivery = await repository.lock_first_pending_delivery(
        session, customer_id=customer_id, channel=channel
    )
    if delivery is None:
        return None
    if delivery.next_attempt_at > now:
        return delivery.next_attempt_at
    if delivery.claimed_until is not None and delivery.claimed_until > now:
        return delivery.claimed_until
    notification = await repository.get_notification(session, delivery.notification_id)
    customer = await customers_service.get(session, customer_id)
    assert notification is not None and customer is not None
    delivery.attempts += 1
    delivery.claimed_until = now + CLAIM_LEASE
    delivery.last_attempt_at = now
    notice = OutgoingNotice(
        event_id=event_id(notification.id),
        kind=notification.kind,
        created=notification.created_at,
        data=notification.payload,
        customer_email=customer.email,
        customer_name=customer.name,
        dashboard_user_id=customer.dashboard_user_id,
    )
    return _Claim(delivery.id, notification.id, delivery.attempts, notice)


async def _record(
    session: AsyncSession, claim: _Claim, outcome: SendOutcome, *, max_attempts: int, now: datetime
) -> datetime | None:
    """Write the outcome; returns when the delivery is due again, if it is retried."""
    delivery = await repository.get_delivery_for_update(session, claim.delivery_id)
    assert delivery is not None
    delivery.claimed_until = None
    delivery.last_response = outcome.answer or delivery.last_response
    delivery.last_error = outcome.error
    result = outcome.result
    if result == "retry" and claim.attempts >= max_attempts:
        result = "dead"
    next_due_at = None
    if result == "retry":
        next_due_at = now + retry_delay(claim.attempts)
        delivery.next_attempt_at = next_due_at
    else:
        delivery.status = result
        if result == "sent":
            delivery.sent_at = now
    NOTIFICATION_DELIVERIES.labels(
        channel=delivery.channel, outcome="retried" if result == "retry" else result
    ).inc()
    await _sum_up(session, claim.notification_id, now)
    log = logger.warning if result in ("retry", "dead") else logger.info
    log(
        "notification_delivery",
        notification=claim.notification_id,
        channel=delivery.channel,
        outcome=result,
        attempts=claim.attempts,
        error=outcome.error,
    )
    return next_due_at


async def _sum_up(session: AsyncSession, notification_id: int, now: datetime) -> None:
    """The notification's status from its channels': dead if one is dead, sent when all are
    done, else pending."""
    notification = await repository.get_notification(session, notification_id, for_update=True)
    assert notification is not None
    deliveries = await repository.deliveries_of(session, [notification_id])
    statuses = {delivery.status for delivery in deliveries}
    notification.attempts = max((delivery.attempts for delivery in deliveries), default=0)
    if "dead" in statuses:
        notification.status = "dead"
    elif statuses <= {"sent", "skipped"}:
        notification.status = "sent"
        notification.sent_at = notification.sent_at or now
    else:
        notification.status = "pending"


async def deliver_for_customer(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: Clock,
    channels: list[Channel],
    customer_id: int,
    max_attempts: int,
) -> DeliveryRun:
    """Send everything of the customer that is due, channel by channel, oldest first."""
    sent = 0
    due_again: list[datetime] = []
    for channel in channels:
        while True:
            now = clock.now()
            async with sessionmaker.begin() as session:
                claim = await _claim_next(
                    session, customer_id=customer_id, channel=channel.name, now=now
                )
            if not isinstance(claim, _Claim):
                if claim is not None:
                    due_again.append(claim)
                break
            try:
                outcome = await channel.send(claim.notice, now=now)
            except Exception as error:  # a bug in a template or channel: retried, kept
                logger.exception("notification_send_crashed", notification=claim.notification_id)
                outcome = SendOutcome("retry", error=f"{type(error).__name__}: {error}")
            async with sessionmaker.begin() as session:
                retry_at = await _record(
                    session, claim, outcome, max_attempts=max_attempts, now=clock.now()
                )
            if retry_at is not None:
                # Later notices on this channel wait for this one (order per customer).
                due_again.append(retry_at)
                break
            sent += outcome.result == "sent"
    return DeliveryRun(sent=sent, next_due_at=min(due_again, default=None))


async def customers_due(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime, limit: int = 500
) -> list[int]:
    """The sweeper's list: customers with a delivery due (never enqueued, lost by Redis, a
    retry's time come, or a dead worker's claim lapsed)."""
    async with sessionmaker() as session:
        return await repository.customers_with_due_deliveries(session, now=now, limit=limit)
