from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Identity,
    Index,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin

BILLING_HISTORY_TYPES = ("subscription", "overage", "add_on", "proration", "refund")

# The predicate of each table's "one row per invoice" index (refunds have their own rows, keyed
# by the refund; an overage row sits beside its invoice's row with the same invoice id).
INVOICE_ROW_PREDICATE = (
    "stripe_refund_id IS NULL AND stripe_invoice_id IS NOT NULL AND overage_charge_id IS NULL"
)


def _row_checks() -> tuple[CheckConstraint, ...]:
    return (
        CheckConstraint(
            "type IN ('subscription', 'overage', 'add_on', 'proration', 'refund')",
            name="type_known",
        ),
        CheckConstraint("currency ~ '^[a-z]{3}$'", name="currency_iso"),
    )


OVERAGE_PART_PREDICATE = "overage_charge_id IS NOT NULL"


def _overage_part_index(name: str) -> Index:
    """An overage charge has one row per invoice holding its items, and at most one for what
    still waits for an invoice (a NULL invoice id: not distinct)."""
    return Index(
        name,
        "overage_charge_id",
        "stripe_invoice_id",
        unique=True,
        postgresql_where=text(OVERAGE_PART_PREDICATE),
        postgresql_nulls_not_distinct=True,
    )


class BillingRecordColumns(TimestampedMixin):
    """The columns of a billing-history row, shared by the hot table and its archive, so an
    archived row is the same row, column for column (the id comes with it)."""

    # Billing rows are never deleted by a cascade: a customer or subscription with history
    # cannot be deleted (ON DELETE RESTRICT), archived history included.
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="RESTRICT"))
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="RESTRICT"), index=True
    )
    type: Mapped[str] = mapped_column(String(16))
    # Stripe's invoice status (draft, open, paid, uncollectible, void), or the refund's.
    status: Mapped[str] = mapped_column(String(32))
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
    # An `overage` row: the charge it records, beside its invoice's row; one row per invoice
    # holding the charge's items (a charge whose items were split between a renewal and the
    # next invoice has two), and one for what waits, pending, for an invoice.
    overage_charge_id: Mapped[int | None] = mapped_column(
        ForeignKey("overage_charges.id", ondelete="RESTRICT")
    )
    number: Mapped[str | None] = mapped_column(String(64))
    hosted_invoice_url: Mapped[str | None] = mapped_column(Text)
    invoice_pdf_url: Mapped[str | None] = mapped_column(Text)
    # When it happened on Stripe (the invoice's or refund's `created`).
    occurred_at: Mapped[datetime]


class BillingHistory(BillingRecordColumns, Base):
    """One row per Stripe invoice, and one per refund: what the customer was billed and paid.

    Filled by the webhook handlers from Stripe's invoices and charges; amounts are minor
    units of `currency`. Settled rows past the retention age move to
    `billing_history_archive` (`billing archive-billing-records`), keeping their ids.
    """

    __tablename__ = "billing_history"
    __table_args__ = (
        *_row_checks(),
        Index(
            "uq_billing_history_invoice",
            "stripe_invoice_id",
            unique=True,
            postgresql_where=text(INVOICE_ROW_PREDICATE),
        ),
        _overage_part_index("uq_billing_history_overage_part"),
        # The list's order and cursor: newest first, per customer.
        Index("ix_billing_history_customer_occurred", "customer_id", "occurred_at", "id"),
        Index("ix_billing_history_customer_id", "customer_id"),
        Index("ix_billing_history_type", "type"),
        Index("ix_billing_history_status", "status"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)


class BillingHistoryArchive(BillingRecordColumns, Base):
    """Billing-history rows moved out of the hot table: settled and old.

    Same columns and the same ids as `billing_history` (so links, PDFs and list cursors stay
    valid), plus when the row was moved. A row is in exactly one of the two tables; a late
    Stripe update of an archived invoice or refund is applied here, never as a new hot row.
    """

    __tablename__ = "billing_history_archive"
    __table_args__ = (
        *_row_checks(),
        Index(
            "uq_billing_history_archive_invoice",
            "stripe_invoice_id",
            unique=True,
            postgresql_where=text(INVOICE_ROW_PREDICATE),
        ),
        _overage_part_index("uq_billing_history_archive_overage_part"),
        # The merged list (include_archived) pages this table with the same keyset; the
        # index also serves the customer foreign key.
        Index("ix_billing_history_archive_customer_occurred", "customer_id", "occurred_at", "id"),
    )

    # The hot row's id, never generated here.
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    archived_at: Mapped[datetime] = mapped_column(server_default=func.now())
