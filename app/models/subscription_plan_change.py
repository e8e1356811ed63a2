from datetime import datetime

from sqlalchemy import ForeignKey, Identity, Index, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class SubscriptionPlanChange(Base):
    """One row each time a subscription's plan (or billing cycle) changed on Stripe.

    Overage is billed with the plan in force when a usage period closes, but a renewal that
    applies a scheduled downgrade may reach us before the renewal's `invoice.created`: the
    row then already holds the new plan. This history says which plan ran up to any moment.
    """

    __tablename__ = "subscription_plan_changes"
    __table_args__ = (
        Index("ix_subscription_plan_changes_lookup", "subscription_id", "effective_at", "id"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT")
    )
    from_plan_id: Mapped[int] = mapped_column(
        ForeignKey("subscription_plans.id", ondelete="RESTRICT"), index=True
    )
    to_plan_id: Mapped[int] = mapped_column(
        ForeignKey("subscription_plans.id", ondelete="RESTRICT"), index=True
    )
    from_billing_cycle: Mapped[str] = mapped_column(String(16))
    to_billing_cycle: Mapped[str] = mapped_column(String(16))
    # The start of the billing period the new plan is billed for, as Stripe's item says: a
    # mid-period upgrade counts from that period's start (the whole period takes the new
    # plan), a downgrade at a renewal from the renewal.
    effective_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
