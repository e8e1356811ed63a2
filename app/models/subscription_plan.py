from decimal import Decimal
from typing import Any

from sqlalchemy import CheckConstraint, Identity, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin

# Rates are Decimal minor units per unit (2.5 = two and a half cents per minute): exact, never
# floats, rounded only when they become a charge (app.core.money.round_to_minor_units).
RATE = Numeric(18, 6)


class SubscriptionPlan(TimestampedMixin, Base):
    __tablename__ = "subscription_plans"
    __table_args__ = (
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso"),
        CheckConstraint("slug ~ '^[a-z0-9][a-z0-9_-]*$'", name="slug_format"),
        CheckConstraint("monthly_price >= 0 AND yearly_price >= 0", name="prices_not_negative"),
        CheckConstraint("included_minutes >= 0", name="included_minutes_not_negative"),
        CheckConstraint("max_agents >= 1", name="max_agents_positive"),
        CheckConstraint(
            "overage_rate_per_minute >= 0 AND overage_rate_per_agent >= 0",
            name="overage_rates_not_negative",
        ),
        CheckConstraint("trial_days IS NULL OR trial_days >= 0", name="trial_days_not_negative"),
        CheckConstraint(
            "call_rounding IN ('per_second', 'per_minute')", name="call_rounding_known"
        ),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, server_default="")
    currency: Mapped[str] = mapped_column(String(3))
    # Minor units of `currency`.
    monthly_price: Mapped[int]
    yearly_price: Mapped[int]
    included_minutes: Mapped[int]
    max_agents: Mapped[int]
    overage_rate_per_minute: Mapped[Decimal] = mapped_column(RATE)
    # Per agent above max_agents, per monthly usage period.
    overage_rate_per_agent: Mapped[Decimal] = mapped_column(RATE)
    features: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # NULL: the deployment's TRIAL_PERIOD_DAYS applies.
    trial_days: Mapped[int | None]
    # How a call's duration becomes minutes: per second (90 s = 1.5 min) or each call rounded
    # up to the whole minute (90 s = 2 min).
    call_rounding: Mapped[str] = mapped_column(String(16), server_default="per_second")
    sort_order: Mapped[int] = mapped_column(server_default="0")
    is_active: Mapped[bool] = mapped_column(server_default=text("true"), index=True)
    stripe_product_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_monthly_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    stripe_yearly_price_id: Mapped[str | None] = mapped_column(String(255), unique=True)
