from sqlalchemy import ForeignKey, Identity, Index, SmallInteger, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin


class PaymentMethod(TimestampedMixin, Base):
    """The local mirror of a customer's cards on Stripe: brand, last4, expiry; never card data."""

    __tablename__ = "payment_methods"
    __table_args__ = (
        # At most one default card per customer.
        Index(
            "uq_payment_methods_one_default_per_customer",
            "customer_id",
            unique=True,
            postgresql_where=text("is_default"),
        ),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    stripe_payment_method_id: Mapped[str] = mapped_column(String(255), unique=True)
    brand: Mapped[str | None] = mapped_column(String(32))
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(SmallInteger)
    exp_year: Mapped[int | None] = mapped_column(SmallInteger)
    is_default: Mapped[bool] = mapped_column(server_default=text("false"))
