from datetime import datetime
from typing import Any

from sqlalchemy import Identity, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class OperatorAlert(Base):
    """Something an operator must look at: a dispute, drift between us and Stripe."""

    __tablename__ = "operator_alerts"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # Unique: the same fact redelivered (a webhook twice) raises one alert.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    created_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
