import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import DriverStatement, StatementTarget
from app.models import StripeEvent, StripeObjectWatermark

_EVENT_COLUMNS = (
    "stripe_event_id",
    "type",
    "api_version",
    "livemode",
    "object_type",
    "object_id",
    "stripe_created_at",
    "payload",
    "received_at",
    "delivery_signed_at",
)
_EVENT_VALUES = [
    "CAST(:payload AS jsonb)" if column == "payload" else f":{column}" for column in _EVENT_COLUMNS
]
# On the driver (a DriverStatement, autocommitted or in the caller's transaction): building an
# ORM insert per delivery was a third of the webhook's CPU.
_INSERT_EVENT_IF_NEW = DriverStatement(
    text(
        f"""
    INSERT INTO stripe_events ({", ".join(_EVENT_COLUMNS)})
    VALUES ({", ".join(_EVENT_VALUES)})
    ON CONFLICT (stripe_event_id) DO NOTHING
    RETURNING id
    """  # noqa: S608 (built from this module's constants, never from input)
    )
)


async def insert_event_if_new(session: StatementTarget, values: dict[str, Any]) -> bool:
    """Store a delivery; False when this event id is stored already.

    ON CONFLICT DO NOTHING on the unique event id: Stripe's redeliveries, even concurrent
    ones, leave exactly one row.
    """
    payload = values.get("payload")
    row = await _INSERT_EVENT_IF_NEW.fetchrow(
        session,
        {
            **{column: values.get(column) for column in _EVENT_COLUMNS},
            "payload": None if payload is None else json.dumps(payload),
        },
    )
    return row is not None


@dataclass(slots=True)
class StoredDelivery:
    stripe_event_id: str
    delivery_signed_at: datetime | None
    status: str
    attempts: int


_LOCK_EVENT_DELIVERY = DriverStatement(
    text(
        """
    SELECT stripe_event_id, delivery_signed_at, status, attempts FROM stripe_events
    WHERE stripe_event_id = :stripe_event_id
    FOR UPDATE
    """
    )
)


async def lock_event_delivery(
    session: StatementTarget, stripe_event_id: str
) -> StoredDelivery | None:
    """What a redelivery is decided on, locked: two deliveries of an event at once decide one
    after the other."""
    row = await _LOCK_EVENT_DELIVERY.fetchrow(session, {"stripe_event_id": stripe_event_id})
    return None if row is None else StoredDelivery(*row)


_RECORD_REDELIVERY = DriverStatement(
    text(
        """
    UPDATE stripe_events SET
        delivery_signed_at = :signed_at,
        -- Stripe retrying an event we gave up on is a reason to try again: pending and due,
        -- so the sweeper runs it even if the enqueue is lost. Apart from this, only an
        -- operator's replay runs a failed event again.
        status = CASE WHEN status = 'failed' THEN 'pending' ELSE status END,
        next_attempt_at = CASE WHEN status = 'failed' THEN CAST(:now AS timestamptz)
                               ELSE next_attempt_at END
    WHERE stripe_event_id = :stripe_event_id
    RETURNING status
    """
    )
)


async def record_redelivery(
    session: StatementTarget, stripe_event_id: str, *, signed_at: datetime, now: datetime
) -> str:
    """Record Stripe's new delivery of a stored event; its status afterwards."""
    row = await _RECORD_REDELIVERY.fetchrow(
        session, {"stripe_event_id": stripe_event_id, "signed_at": signed_at, "now": now}
    )
    assert row is not None, "the event is locked by lock_event_delivery"
    status: str = row[0]
    return status


async def get_event(session: AsyncSession, stripe_event_id: str) -> StripeEvent | None:
    return await session.scalar(
        select(StripeEvent).where(StripeEvent.stripe_event_id == stripe_event_id)
    )


async def get_event_by_row_id(session: AsyncSession, row_id: int) -> StripeEvent | None:
    return await session.get(StripeEvent, row_id)


async def claim_event(session: AsyncSession, stripe_event_id: str) -> StripeEvent | None:
    """Lock an event for processing; None if another worker holds it right now."""
    return await session.scalar(
        select(StripeEvent)
        .where(StripeEvent.stripe_event_id == stripe_event_id)
        .with_for_update(skip_locked=True)
    )


async def lock_watermark(
    session: AsyncSession, *, object_id: str, object_type: str
) -> StripeObjectWatermark:
    """The object's watermark row, locked: events of one object apply one at a time."""
    await session.execute(
        insert(StripeObjectWatermark)
        .values(object_id=object_id, object_type=object_type)
        .on_conflict_do_nothing(index_elements=[StripeObjectWatermark.object_id])
    )
    watermark = await session.scalar(
        select(StripeObjectWatermark)
        .where(StripeObjectWatermark.object_id == object_id)
        .with_for_update()
    )
    assert watermark is not None
    return watermark


async def get_watermark(session: AsyncSession, object_id: str) -> StripeObjectWatermark | None:
    return await session.get(StripeObjectWatermark, object_id)


async def due_for_processing(
    session: AsyncSession, *, now: datetime, received_before: datetime, limit: int
) -> Sequence[StripeEvent]:
    return (
        await session.scalars(
            select(StripeEvent)
            .where(
                StripeEvent.status == "pending",
                StripeEvent.received_at < received_before,
                (StripeEvent.next_attempt_at.is_(None)) | (StripeEvent.next_attempt_at <= now),
            )
            .order_by(StripeEvent.stripe_created_at, StripeEvent.id)
            .limit(limit)
        )
    ).all()


async def list_events(
    session: AsyncSession, *, status: str | None, event_type: str | None, limit: int
) -> Sequence[StripeEvent]:
    query = select(StripeEvent).order_by(StripeEvent.received_at.desc(), StripeEvent.id.desc())
    if status:
        query = query.where(StripeEvent.status == status)
    if event_type:
        query = query.where(StripeEvent.type == event_type)
    return (await session.scalars(query.limit(limit))).all()


async def count_by_status(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(
        select(StripeEvent.status, func.count()).group_by(StripeEvent.status)
    )
    return {status: count for status, count in rows.all()}


async def oldest_pending_received_at(session: AsyncSession) -> datetime | None:
    return await session.scalar(
        select(func.min(StripeEvent.received_at)).where(StripeEvent.status == "pending")
    )


async def purge_payloads(session: AsyncSession, *, received_before: datetime, now: datetime) -> int:
    result = await session.execute(
        update(StripeEvent)
        .where(StripeEvent.received_at < received_before, StripeEvent.payload.is_not(None))
        .values(payload=None, payload_purged_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def newest_created_at(session: AsyncSession) -> datetime | None:
    return await session.scalar(select(func.max(StripeEvent.stripe_created_at)))
