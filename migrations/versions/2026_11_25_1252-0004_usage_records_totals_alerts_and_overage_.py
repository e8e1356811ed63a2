"""usage records totals alerts and overage charges

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 12:52:11.421750+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "overage_charges",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("minutes_over", sa.Numeric(precision=16, scale=4), nullable=False),
        sa.Column("agents_over", sa.BigInteger(), nullable=False),
        sa.Column("minutes_amount", sa.BigInteger(), nullable=False),
        sa.Column("agents_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_invoice_item_ids", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("invoiced_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ck_overage_charges_currency_iso")),
        sa.CheckConstraint(
            "status IN ('pending', 'invoiced', 'pending_next_invoice')",
            name=op.f("ck_overage_charges_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_overage_charges_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_overage_charges")),
        sa.UniqueConstraint(
            "subscription_id",
            "period_start",
            "sequence",
            name=op.f("uq_overage_charges_subscription_id_period_start_sequence"),
        ),
    )
    op.create_index(op.f("ix_overage_charges_status"), "overage_charges", ["status"], unique=False)
    op.create_index(
        op.f("ix_overage_charges_subscription_id"),
        "overage_charges",
        ["subscription_id"],
        unique=False,
    )
    op.create_table(
        "usage_alerts",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("resource", sa.String(length=16), server_default="", nullable=False),
        sa.Column("threshold", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("action_required", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "priority IN ('low', 'medium', 'high')", name=op.f("ck_usage_alerts_priority_known")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_usage_alerts_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_usage_alerts_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_alerts")),
        sa.UniqueConstraint(
            "subscription_id",
            "period_start",
            "kind",
            "resource",
            "threshold",
            name=op.f("uq_usage_alerts_subscription_id_period_start_kind_resource_threshold"),
        ),
    )
    op.create_index(
        op.f("ix_usage_alerts_acknowledged_at"), "usage_alerts", ["acknowledged_at"], unique=False
    )
    op.create_index(
        op.f("ix_usage_alerts_customer_id"), "usage_alerts", ["customer_id"], unique=False
    )
    op.create_index(
        op.f("ix_usage_alerts_subscription_id"), "usage_alerts", ["subscription_id"], unique=False
    )
    op.create_table(
        "usage_daily_totals",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column(
            "minutes_used", sa.Numeric(precision=16, scale=4), server_default="0", nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_usage_daily_totals_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_daily_totals")),
        sa.UniqueConstraint(
            "subscription_id", "day", name=op.f("uq_usage_daily_totals_subscription_id_day")
        ),
    )
    op.create_index(
        op.f("ix_usage_daily_totals_subscription_id"),
        "usage_daily_totals",
        ["subscription_id"],
        unique=False,
    )
    op.create_table(
        "usage_period_totals",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "minutes_used", sa.Numeric(precision=16, scale=4), server_default="0", nullable=False
        ),
        sa.Column("peak_agents", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("record_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("overage_billed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "minutes_used >= 0 AND peak_agents >= 0",
            name=op.f("ck_usage_period_totals_totals_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_usage_period_totals_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_period_totals")),
        sa.UniqueConstraint(
            "subscription_id",
            "period_start",
            name=op.f("uq_usage_period_totals_subscription_id_period_start"),
        ),
    )
    op.create_index(
        op.f("ix_usage_period_totals_subscription_id"),
        "usage_period_totals",
        ["subscription_id"],
        unique=False,
    )
    op.create_table(
        "usage_records",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("call_id", sa.String(length=255), nullable=True),
        sa.Column("minutes", sa.Numeric(precision=16, scale=4), nullable=True),
        sa.Column("agents", sa.BigInteger(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_payload", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(kind = 'minutes' AND minutes IS NOT NULL AND call_id IS NOT NULL) OR (kind = 'agents' AND agents IS NOT NULL)",
            name=op.f("ck_usage_records_amount_matches_kind"),
        ),
        sa.CheckConstraint(
            "kind IN ('minutes', 'agents')", name=op.f("ck_usage_records_kind_known")
        ),
        sa.CheckConstraint(
            "source IN ('user', 'service')", name=op.f("ck_usage_records_source_known")
        ),
        sa.CheckConstraint(
            "agents IS NULL OR agents >= 0", name=op.f("ck_usage_records_agents_not_negative")
        ),
        sa.CheckConstraint(
            "minutes IS NULL OR minutes >= 0", name=op.f("ck_usage_records_minutes_not_negative")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_usage_records_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_usage_records_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_records")),
    )
    op.create_index(
        op.f("ix_usage_records_customer_id"), "usage_records", ["customer_id"], unique=False
    )
    op.create_index(
        "ix_usage_records_subscription_period",
        "usage_records",
        ["subscription_id", "period_start"],
        unique=False,
    )
    op.create_index(
        "uq_usage_records_customer_call",
        "usage_records",
        ["customer_id", "call_id"],
        unique=True,
        postgresql_where=sa.text("call_id IS NOT NULL"),
    )
    op.add_column("billing_history", sa.Column("overage_charge_id", sa.BigInteger(), nullable=True))
    op.create_unique_constraint(
        op.f("uq_billing_history_overage_charge_id"), "billing_history", ["overage_charge_id"]
    )
    op.create_foreign_key(
        op.f("fk_billing_history_overage_charge_id_overage_charges"),
        "billing_history",
        "overage_charges",
        ["overage_charge_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.add_column(
        "subscription_plans",
        sa.Column(
            "call_rounding", sa.String(length=16), server_default="per_second", nullable=False
        ),
    )
    op.add_column(
        "subscriptions",
        sa.Column("billing_cycle_anchor", sa.DateTime(timezone=True), nullable=True),
    )
    # The invoice row stays one per invoice; an overage row sits beside it with the same id.
    op.drop_index("uq_billing_history_invoice", table_name="billing_history")
    op.create_index(
        "uq_billing_history_invoice",
        "billing_history",
        ["stripe_invoice_id"],
        unique=True,
        postgresql_where=sa.text(
            "stripe_refund_id IS NULL AND stripe_invoice_id IS NOT NULL"
            " AND overage_charge_id IS NULL"
        ),
    )


def downgrade() -> None:
    op.drop_index("uq_billing_history_invoice", table_name="billing_history")
    op.create_index(
        "uq_billing_history_invoice",
        "billing_history",
        ["stripe_invoice_id"],
        unique=True,
        postgresql_where=sa.text("stripe_refund_id IS NULL AND stripe_invoice_id IS NOT NULL"),
    )
    op.drop_column("subscriptions", "billing_cycle_anchor")
    op.drop_column("subscription_plans", "call_rounding")
    op.drop_constraint(
        op.f("fk_billing_history_overage_charge_id_overage_charges"),
        "billing_history",
        type_="foreignkey",
    )
    op.drop_constraint(
        op.f("uq_billing_history_overage_charge_id"), "billing_history", type_="unique"
    )
    op.drop_column("billing_history", "overage_charge_id")
    op.drop_index(
        "uq_usage_records_customer_call",
        table_name="usage_records",
        postgresql_where=sa.text("call_id IS NOT NULL"),
    )
    op.drop_index("ix_usage_records_subscription_period", table_name="usage_records")
    op.drop_index(op.f("ix_usage_records_customer_id"), table_name="usage_records")
    op.drop_table("usage_records")
    op.drop_index(op.f("ix_usage_period_totals_subscription_id"), table_name="usage_period_totals")
    op.drop_table("usage_period_totals")
    op.drop_index(op.f("ix_usage_daily_totals_subscription_id"), table_name="usage_daily_totals")
    op.drop_table("usage_daily_totals")
    op.drop_index(op.f("ix_usage_alerts_subscription_id"), table_name="usage_alerts")
    op.drop_index(op.f("ix_usage_alerts_customer_id"), table_name="usage_alerts")
    op.drop_index(op.f("ix_usage_alerts_acknowledged_at"), table_name="usage_alerts")
    op.drop_table("usage_alerts")
    op.drop_index(op.f("ix_overage_charges_subscription_id"), table_name="overage_charges")
    op.drop_index(op.f("ix_overage_charges_status"), table_name="overage_charges")
    op.drop_table("overage_charges")
