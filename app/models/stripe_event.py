from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Identity, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

STRIPE_EVENT_STATUSES = ("pending", "processed", "failed", "ignored")


class StripeEvent(Base):
    """A webhook delivery from Stripe: stored first, processed by the worker.

    The row is the truth, the queue only a messenger: a job lost with Redis is found again by
    the sweeper from `status`.
    """

    __tablename__ = "stripe_events"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'processed', 'failed', 'ignored')", name="status_known"
        ),
        CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    # Unique: Stripe delivers at least once; a duplicate finds this row and adds nothing.
    stripe_event_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(255), index=True)
    api_version: Mapped[str | None] = mapped_column(String(64))
    livemode: Mapped[bool]
    object_type: Mapped[str | None] = mapped_column(String(64))
    object_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_created_at: Mapped[datetime]
    # Purged after the retention period; the row stays as a record of the delivery.
    payload: Mapped[dict[str, Any] | None]
    status: Mapped[str] = mapped_column(String(16), server_default="pending", index=True)
    attempts: Mapped[int] = mapped_column(server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime]
    # The signature timestamp of the latest delivery accepted: a delivery signed no later is
    # a replay of one already seen, not Stripe delivering again. None for events caught up
    # from Stripe's event list rather than delivered.
    delivery_signed_at: Mapped[datetime | None]
    processed_at: Mapped[datetime | None]
    # When the sweeper may enqueue it again (after a failed attempt's back-off).
    next_attempt_at: Mapped[datetime | None] = mapped_column(index=True)
    payload_purged_at: Mapped[datetime | None]


class StripeObjectWatermark(Base):
    """How recent the state we applied for one Stripe object is.

    Events of one object are applied one at a time under this row's lock, and never with
    state older than `applied_as_of`.
    """

    __tablename__ = "stripe_object_watermarks"

    object_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    object_type: Mapped[str] = mapped_column(String(64))
    # None until a first state is applied.
    applied_as_of: Mapped[datetime | None]
    last_event_id: Mapped[str | None] = mapped_column(String(255))
