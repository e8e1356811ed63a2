"""stripe events billing history alerts and notifications

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 12:27:26.231323+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_alerts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column(
            "details",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("dedupe_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_alerts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_operator_alerts_dedupe_key")),
    )
    op.create_index(op.f("ix_operator_alerts_kind"), "operator_alerts", ["kind"], unique=False)
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("stripe_event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=255), nullable=False),
        sa.Column("api_version", sa.String(length=64), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=True),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("payload_purged_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'processed', 'failed', 'ignored')",
            name=op.f("ck_stripe_events_status_known"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_stripe_events_attempts_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stripe_events")),
        sa.UniqueConstraint("stripe_event_id", name=op.f("uq_stripe_events_stripe_event_id")),
    )
    op.create_index(
        op.f("ix_stripe_events_next_attempt_at"), "stripe_events", ["next_attempt_at"], unique=False
    )
    op.create_index(
        op.f("ix_stripe_events_object_id"), "stripe_events", ["object_id"], unique=False
    )
    op.create_index(op.f("ix_stripe_events_status"), "stripe_events", ["status"], unique=False)
    op.create_index(op.f("ix_stripe_events_type"), "stripe_events", ["type"], unique=False)
    op.create_table(
        "stripe_object_watermarks",
        sa.Column("object_id", sa.String(length=255), nullable=False),
        sa.Column("object_type", sa.String(length=64), nullable=False),
        sa.Column("applied_as_of", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_event_id", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("object_id", name=op.f("pk_stripe_object_watermarks")),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column(
            "payload",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("dedupe_key", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'failed')", name=op.f("ck_notifications_status_known")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_notifications_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notifications")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_notifications_dedupe_key")),
    )
    op.create_index(
        op.f("ix_notifications_customer_id"), "notifications", ["customer_id"], unique=False
    )
    op.create_index(op.f("ix_notifications_status"), "notifications", ["status"], unique=False)
    op.create_table(
        "billing_history",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
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
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ck_billing_history_currency_iso")),
        sa.CheckConstraint(
            "type IN ('subscription', 'overage', 'add_on', 'proration', 'refund')",
            name=op.f("ck_billing_history_type_known"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_billing_history_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_billing_history_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_billing_history")),
        sa.UniqueConstraint("stripe_refund_id", name=op.f("uq_billing_history_stripe_refund_id")),
    )
    op.create_index(
        op.f("ix_billing_history_customer_id"), "billing_history", ["customer_id"], unique=False
    )
    op.create_index(
        "ix_billing_history_customer_occurred",
        "billing_history",
        ["customer_id", "occurred_at", "id"],
        unique=False,
    )
    op.create_index(op.f("ix_billing_history_status"), "billing_history", ["status"], unique=False)
    op.create_index(
        op.f("ix_billing_history_stripe_invoice_id"),
        "billing_history",
        ["stripe_invoice_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_billing_history_subscription_id"),
        "billing_history",
        ["subscription_id"],
        unique=False,
    )
    op.create_index(op.f("ix_billing_history_type"), "billing_history", ["type"], unique=False)
    op.create_index(
        "uq_billing_history_invoice",
        "billing_history",
        ["stripe_invoice_id"],
        unique=True,
        postgresql_where=sa.text("stripe_refund_id IS NULL AND stripe_invoice_id IS NOT NULL"),
    )
    op.add_column(
        "customers",
        sa.Column("stripe_customer_deleted_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("customers", "stripe_customer_deleted_at")
    op.drop_index(
        "uq_billing_history_invoice",
        table_name="billing_history",
        postgresql_where=sa.text("stripe_refund_id IS NULL AND stripe_invoice_id IS NOT NULL"),
    )
    op.drop_index(op.f("ix_billing_history_type"), table_name="billing_history")
    op.drop_index(op.f("ix_billing_history_subscription_id"), table_name="billing_history")
    op.drop_index(op.f("ix_billing_history_stripe_invoice_id"), table_name="billing_history")
    op.drop_index(op.f("ix_billing_history_status"), table_name="billing_history")
    op.drop_index("ix_billing_history_customer_occurred", table_name="billing_history")
    op.drop_index(op.f("ix_billing_history_customer_id"), table_name="billing_history")
    op.drop_table("billing_history")
    op.drop_index(op.f("ix_notifications_status"), table_name="notifications")
    op.drop_index(op.f("ix_notifications_customer_id"), table_name="notifications")
    op.drop_table("notifications")
    op.drop_table("stripe_object_watermarks")
    op.drop_index(op.f("ix_stripe_events_type"), table_name="stripe_events")
    op.drop_index(op.f("ix_stripe_events_status"), table_name="stripe_events")
    op.drop_index(op.f("ix_stripe_events_object_id"), table_name="stripe_events")
    op.drop_index(op.f("ix_stripe_events_next_attempt_at"), table_name="stripe_events")
    op.drop_table("stripe_events")
    op.drop_index(op.f("ix_operator_alerts_kind"), table_name="operator_alerts")
    op.drop_table("operator_alerts")
