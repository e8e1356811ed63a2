from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, Identity, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class IdempotencyKey(Base):
    """A client's `Idempotency-Key` on a POST, with the first answer to replay for 24 hours."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        # One row per caller, path and key: the second of two concurrent requests finds it.
        UniqueConstraint("scope", "key"),
        CheckConstraint("state IN ('in_progress', 'completed')", name="state_known"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(String(512))
    key: Mapped[str] = mapped_column(String(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    # An in-progress request that crashed stops blocking its key after this.
    locked_until: Mapped[datetime]
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
