from datetime import datetime
from typing import Any

from sqlalchemy import Identity, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class ConsoleAuditEntry(Base):
    """One change made from the operator console: who, when, what, and how it ended. Written
    in the same transaction as the change where there is one, so an entry never claims a
    change that was rolled back."""

    __tablename__ = "console_audit"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    # The dashboard user id of the operator's token, or the one named to `billing console-link`.
    actor_user_id: Mapped[str] = mapped_column(String(255))
    # `plan.update`, `catalog.sync`, `webhook_event.replay`, `operator_alert.acknowledge`...
    action: Mapped[str] = mapped_column(String(64), index=True)
    # What it acted on: `plan:3`, `stripe_event:evt_...`, `catalog`.
    target: Mapped[str] = mapped_column(String(255))
    outcome: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))


class ConsoleSignInLink(Base):
    """A one-time sign-in link printed by `billing console-link`. Only the SHA-256 of its
    secret is kept, so the table cannot be read back into working links; `used_at` makes it
    single-use."""

    __tablename__ = "console_sign_in_links"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
