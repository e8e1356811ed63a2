from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Identity, Index, String, Text, UniqueConstraint
from sqlalchemy import text as sql
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

NOTIFICATION_CHANNELS = ("email", "dashboard")
# `pending`: due at `next_attempt_at` (claimed while `claimed_until` is ahead); `sent`;
# `skipped`: the channel is not configured, or the customer has no email address; `dead`:
# attempts used up, or refused for good (a 4xx from the dashboard, a 5xx from SMTP).
DELIVERY_STATUSES = ("pending", "sent", "skipped", "dead")


class NotificationDelivery(Base):
    """One channel of one notification: its state, attempts and the receiver's last answer.
    The row is the truth; arq only runs deliveries, and a sweeper finds a due row again when
    Redis lost its job."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        UniqueConstraint("notification_id", "channel"),
        CheckConstraint("channel IN ('email', 'dashboard')", name="channel_known"),
        CheckConstraint("status IN ('pending', 'sent', 'skipped', 'dead')", name="status_known"),
        # The delivery loop's question: the customer's oldest unfinished row on a channel.
        Index(
            "ix_notification_deliveries_pending_per_customer",
            "customer_id",
            "channel",
            "notification_id",
            postgresql_where=sql("status = 'pending'"),
        ),
        # The sweeper's: what is due.
        Index(
            "ix_notification_deliveries_pending_due",
            "next_attempt_at",
            postgresql_where=sql("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    notification_id: Mapped[int] = mapped_column(
        ForeignKey("notifications.id", ondelete="RESTRICT")
    )
    # The notification's, kept here so per-customer order needs no join.
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    channel: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(server_default="0")
    next_attempt_at: Mapped[datetime]
    # A worker's claim: until then no other worker sends it; a worker that died leaves it to
    # expire, and the row is sent again (at least once, never lost).
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    # What the receiver answered last (the dashboard's status and body, the SMTP reply).
    last_response: Mapped[str | None] = mapped_column(Text)
    last_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
