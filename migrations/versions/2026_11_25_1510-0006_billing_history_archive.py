"""billing history archive: old settled rows moved out of the hot table, same ids

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 15:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "billing_history_archive",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column(
            "archived_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("amount_due", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("billing_reason", sa.String(length=64), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_charge_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_refund_id", sa.String(length=255), nullable=True),
        sa.Column("overage_charge_id", sa.BigInteger(), nullable=True),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("hosted_invoice_url", sa.Text(), nullable=True),
        sa.Column("invoice_pdf_url", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "currency ~ '^[a-z]{3}$'", name=op.f("ck_billing_history_archive_currency_iso")
        ),
        sa.CheckConstraint(
            "type IN ('subscription', 'overage', 'add_on', 'proration', 'refund')",
            name=op.f("ck_billing_history_archive_type_known"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_billing_history_archive_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["overage_charge_id"],
            ["overage_charges.id"],
            name=op.f("fk_billing_history_archive_overage_charge_id_overage_charges"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_billing_history_archive_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_history_archive")),
        sa.UniqueConstraint(
            "overage_charge_id", name=op.f("uq_billing_history_archive_overage_charge_id")
        ),
        sa.UniqueConstraint(
            "stripe_refund_id", name=op.f("uq_billing_history_archive_stripe_refund_id")
        ),
    )
    op.create_index(
        "ix_billing_history_archive_customer_occurred",
        "billing_history_archive",
        ["customer_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_billing_history_archive_stripe_invoice_id"),
        "billing_history_archive",
        ["stripe_invoice_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_billing_history_archive_subscription_id"),
        "billing_history_archive",
        ["subscription_id"],
        unique=False,
    )
    op.create_index(
        "uq_billing_history_archive_invoice",
        "billing_history_archive",
        ["stripe_invoice_id"],
        unique=True,
        postgresql_where=sa.text(
            "stripe_refund_id IS NULL AND stripe_invoice_id IS NOT NULL AND overage_charge_id IS NULL"
        ),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_billing_history_archive_invoice",
        table_name="billing_history_archive",
        postgresql_where=sa.text(
            "stripe_refund_id IS NULL AND stripe_invoice_id IS NOT NULL AND overage_charge_id IS NULL"
        ),
    )
    op.drop_index(
        op.f("ix_billing_history_archive_subscription_id"), table_name="billing_history_archive"
    )
    op.drop_index(
        op.f("ix_billing_history_archive_stripe_invoice_id"), table_name="billing_history_archive"
    )
    op.drop_index(
        "ix_billing_history_archive_customer_occurred", table_name="billing_history_archive"
    )
    op.drop_table("billing_history_archive")
