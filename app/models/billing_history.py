from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Identity, Index, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin

BILLING_HISTORY_TYPES = ("subscription", "overage", "add_on", "proration", "refund")


class BillingHistory(TimestampedMixin, Base):
    """One row per Stripe invoice, and one per refund: what the customer was billed and paid.

    Filled by the webhook handlers from Stripe's invoices and charges; amounts are minor
    units of `currency`.
    """

    __tablename__ = "billing_history"
    __table_args__ = (
        CheckConstraint(
            "type IN ('subscription', 'overage', 'add_on', 'proration', 'refund')",
            name="type_known",
        ),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso"),
        # One row per invoice (refunds have their own rows, keyed by the refund).
        Index(
            "uq_billing_history_invoice",
            "stripe_invoice_id",
            unique=True,
            postgresql_where=text(
                "stripe_refund_id IS NULL AND stripe_invoice_id IS NOT NULL"
                " AND overage_charge_id IS NULL"
            ),
        ),
        # The list's order and cursor: newest first, per customer.
        Index("ix_billing_history_customer_occurred", "customer_id", "occurred_at", "id"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    type: Mapped[str] = mapped_column(String(16), index=True)
    # Stripe's invoice status (draft, open, paid, uncollectible, void), or the refund's.
    status: Mapped[str] = mapped_column(String(32), index=True)
    amount: Mapped[int]
    amount_paid: Mapped[int] = mapped_column(server_default="0")
    amount_due: Mapped[int] = mapped_column(server_default="0")
    currency: Mapped[str] = mapped_column(String(3))
    description: Mapped[str | None] = mapped_column(Text)
    billing_reason: Mapped[str | None] = mapped_column(String(64))
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), index=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255))
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    # An `overage` row: the charge it records (one row per charge, beside its invoice's row).
    overage_charge_id: Mapped[int | None] = mapped_column(
        ForeignKey("overage_charges.id", ondelete="RESTRICT"), unique=True
    )
    number: Mapped[str | None] = mapped_column(String(64))
    hosted_invoice_url: Mapped[str | None] = mapped_column(Text)
    invoice_pdf_url: Mapped[str | None] = mapped_column(Text)
    # When it happened on Stripe (the invoice's or refund's `created`).
    occurred_at: Mapped[datetime]
