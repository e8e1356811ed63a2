from typing import Any

from sqlalchemy import CheckConstraint, Identity, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin


class AddOn(TimestampedMixin, Base):
    """An extra a subscription can carry: more minutes, more agents, or a feature."""

    __tablename__ = "add_ons"
    __table_args__ = (
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso"),
        CheckConstraint("slug ~ '^[a-z0-9][a-z0-9_-]*$'", name="slug_format"),
        CheckConstraint("monthly_price >= 0 AND yearly_price >= 0", name="prices_not_negative"),
        CheckConstraint(
            "extra_minutes >= 0 AND extra_agents >= 0", name="extra_limits_not_negative"
        ),
        CheckConstraint("max_quantity >= 1", name="max_quantity_positive"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, server_default="")
    currency: Mapped[str] = mapped_column(String(3))
    # Minor units of `currency`, per unit of quantity.
    monthly_price: Mapped[int]
    yearly_price: Mapped[int]
    # What one unit adds to the plan's monthly limits.
    extra_minutes: Mapped[int] = mapped_column(server_default="0")
    extra_agents: Mapped[int] = mapped_column(server_default="0")
    features: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    max_quantity: Mapped[int] = mapped_column(server_default="1")
    is_active: Mapped[bool] = mapped_column(server_default=text("true"), index=True)
    stripe_product_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_monthly_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_yearly_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)
