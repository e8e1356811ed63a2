"""plan changes, closing terms and suspension

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25 15:20:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "subscription_plan_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("from_plan_id", sa.BigInteger(), nullable=False),
        sa.Column("to_plan_id", sa.BigInteger(), nullable=False),
        sa.Column("from_billing_cycle", sa.String(length=16), nullable=False),
        sa.Column("to_billing_cycle", sa.String(length=16), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["from_plan_id"],
            ["subscription_plans.id"],
            name=op.f("fk_subscription_plan_changes_from_plan_id_subscription_plans"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_plan_changes_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["to_plan_id"],
            ["subscription_plans.id"],
            name=op.f("fk_subscription_plan_changes_to_plan_id_subscription_plans"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_plan_changes")),
    )
    op.create_index(
        op.f("ix_subscription_plan_changes_from_plan_id"),
        "subscription_plan_changes",
        ["from_plan_id"],
        unique=False,
    )
    op.create_index(
        "ix_subscription_plan_changes_lookup",
        "subscription_plan_changes",
        ["subscription_id", "effective_at", "id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_subscription_plan_changes_to_plan_id"),
        "subscription_plan_changes",
        ["to_plan_id"],
        unique=False,
    )
    op.add_column("customers", sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customers", sa.Column("suspension_reason", sa.Text(), nullable=True))
    op.add_column(
        "usage_period_totals", sa.Column("closed_included_minutes", sa.BigInteger(), nullable=True)
    )
    op.add_column(
        "usage_period_totals", sa.Column("closed_agent_limit", sa.BigInteger(), nullable=True)
    )
    op.add_column(
        "usage_period_totals",
        sa.Column("closed_rate_per_minute", sa.Numeric(precision=18, scale=6), nullable=True),
    )
    op.add_column(
        "usage_period_totals",
        sa.Column("closed_rate_per_agent", sa.Numeric(precision=18, scale=6), nullable=True),
    )
    op.add_column(
        "usage_period_totals", sa.Column("closed_currency", sa.String(length=3), nullable=True)
    )
    op.add_column("usage_period_totals", sa.Column("closed_in_trial", sa.Boolean(), nullable=True))
    # ### end Alembic commands ###


def downgrade() -> None:
    op.drop_column("usage_period_totals", "closed_in_trial")
    op.drop_column("usage_period_totals", "closed_currency")
    op.drop_column("usage_period_totals", "closed_rate_per_agent")
    op.drop_column("usage_period_totals", "closed_rate_per_minute")
    op.drop_column("usage_period_totals", "closed_agent_limit")
    op.drop_column("usage_period_totals", "closed_included_minutes")
    op.drop_column("customers", "suspension_reason")
    op.drop_column("customers", "suspended_at")
    op.drop_index(
        op.f("ix_subscription_plan_changes_to_plan_id"), table_name="subscription_plan_changes"
    )
    op.drop_index("ix_subscription_plan_changes_lookup", table_name="subscription_plan_changes")
    op.drop_index(
        op.f("ix_subscription_plan_changes_from_plan_id"), table_name="subscription_plan_changes"
    )
    op.drop_table("subscription_plan_changes")
    # ### end Alembic commands ###
