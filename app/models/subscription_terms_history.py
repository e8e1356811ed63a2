from datetime import datetime

from sqlalchemy import ForeignKey, Identity, Index, func
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class SubscriptionAnchorChange(Base):
    """One row each time a subscription's billing cycle anchor moved on Stripe (a switch of
    billing cycle restarts the cycle now; a trial ended early, at its end).

    Usage periods are counted from the anchor, so a record is placed by the anchor in force
    when it happened, not by today's: a late record from before a switch to yearly belongs
    to the (billed) period it happened in. See `app.core.periods.usage_period_at`.
    """

    __tablename__ = "subscription_anchor_changes"
    __table_args__ = (
        Index("ix_subscription_anchor_changes_lookup", "subscription_id", "effective_at", "id"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT")
    )
    from_anchor: Mapped[datetime]
    to_anchor: Mapped[datetime]
    # From when the new anchor counts: the moment of the change (Stripe's new anchor, or when
    # we saw it if that was earlier, for an anchor set in the future).
    effective_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SubscriptionAddOnChange(Base):
    """One row each time the quantity of an add-on on a subscription changed on Stripe
    (0 before it was added, 0 after it was removed).

    A usage period is priced by the add-ons held at its end, not when the close happens to
    run (an hour, a day, or with webhook retries days later): see
    `app.usage.overage.overage_terms_for_period`.
    """

    __tablename__ = "subscription_add_on_changes"
    __table_args__ = (
        Index("ix_subscription_add_on_changes_lookup", "subscription_id", "effective_at", "id"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT")
    )
    add_on_id: Mapped[int] = mapped_column(
        ForeignKey("add_ons.id", ondelete="RESTRICT"), index=True
    )
    from_quantity: Mapped[int]
    to_quantity: Mapped[int]
    effective_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
