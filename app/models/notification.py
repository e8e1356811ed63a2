from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Identity, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base

# `pending`: a channel is still to deliver (or retrying); `sent`: every channel done (sent, or
# skipped as not configured); `dead`: a channel gave up (an operator may resend it).
NOTIFICATION_STATUSES = ("pending", "sent", "dead")


class Notification(Base):
    """The outbox: a message to a customer (email, the dashboard's webhook), written in the
    same transaction as the fact it reports, so a rollback sends nothing and a crash loses
    nothing. Each channel's delivery is a `notification_deliveries` row; `status` sums them
    up."""

    __tablename__ = "notifications"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'dead')", name="status_known"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    kind: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # Unique: one notice per fact, however often the webhook that reports it arrives.
    dedupe_key: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), server_default="pending", index=True)
    # The most attempts any of its channels took.
    attempts: Mapped[int] = mapped_column(server_default="0")
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
