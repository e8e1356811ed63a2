from sqlalchemy import CheckConstraint, ForeignKey, Identity, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin


class SubscriptionAddOn(TimestampedMixin, Base):
    __tablename__ = "subscription_add_ons"
    __table_args__ = (
        UniqueConstraint("subscription_id", "add_on_id"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    add_on_id: Mapped[int] = mapped_column(
        ForeignKey("add_ons.id", ondelete="RESTRICT"), index=True
    )
    quantity: Mapped[int]
    stripe_subscription_item_id: Mapped[str | None] = mapped_column(String(255), unique=True)
