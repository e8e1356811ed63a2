from datetime import datetime

from sqlalchemy import Identity, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin


class Customer(TimestampedMixin, Base):
    """A dashboard user's billing account, created on the user's first authenticated call."""

    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    # The dashboard's user id, as text: SimpleJWT sends it as a string or a number.
    # Unique, so concurrent first calls of one user create one row.
    dashboard_user_id: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    name: Mapped[str | None] = mapped_column(String(255))
    # Unique: one Stripe customer never backs two accounts.
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # Set when the Stripe customer was deleted on Stripe (customer.deleted).
    stripe_customer_deleted_at: Mapped[datetime | None]
    # Access suspended by an operator: calls are refused whatever the subscription's status,
    # and a new subscription does not lift it (it belongs to the account, not to one
    # subscription), until an operator does.
    suspended_at: Mapped[datetime | None]
    suspension_reason: Mapped[str | None] = mapped_column(Text)
