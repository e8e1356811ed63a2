"""create catalog and customers

Revision ID: 0001
Revises:
Create Date: 2026-11-25 11:46:41.751860+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "add_ons",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("monthly_price", sa.BigInteger(), nullable=False),
        sa.Column("yearly_price", sa.BigInteger(), nullable=False),
        sa.Column("extra_minutes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("extra_agents", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "features",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("max_quantity", sa.BigInteger(), server_default="1", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("stripe_product_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_monthly_price_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_yearly_price_id", sa.String(length=255), nullable=True),
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
        sa.CheckConstraint("currency ~ '^[a-z]{3}$'", name=op.f("ck_add_ons_currency_iso")),
        sa.CheckConstraint("slug ~ '^[a-z0-9][a-z0-9_-]*$'", name=op.f("ck_add_ons_slug_format")),
        sa.CheckConstraint(
            "extra_minutes >= 0 AND extra_agents >= 0",
            name=op.f("ck_add_ons_extra_limits_not_negative"),
        ),
        sa.CheckConstraint("max_quantity >= 1", name=op.f("ck_add_ons_max_quantity_positive")),
        sa.CheckConstraint(
            "monthly_price >= 0 AND yearly_price >= 0", name=op.f("ck_add_ons_prices_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_add_ons")),
        sa.UniqueConstraint("name", name=op.f("uq_add_ons_name")),
        sa.UniqueConstraint("slug", name=op.f("uq_add_ons_slug")),
        sa.UniqueConstraint(
            "stripe_monthly_price_id", name=op.f("uq_add_ons_stripe_monthly_price_id")
        ),
        sa.UniqueConstraint("stripe_product_id", name=op.f("uq_add_ons_stripe_product_id")),
        sa.UniqueConstraint(
            "stripe_yearly_price_id", name=op.f("uq_add_ons_stripe_yearly_price_id")
        ),
    )
    op.create_index(op.f("ix_add_ons_is_active"), "add_ons", ["is_active"], unique=False)
    op.create_table(
        "customers",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("dashboard_user_id", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("stripe_customer_id", sa.String(length=255), nullable=True),
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
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customers")),
        sa.UniqueConstraint("dashboard_user_id", name=op.f("uq_customers_dashboard_user_id")),
        sa.UniqueConstraint("stripe_customer_id", name=op.f("uq_customers_stripe_customer_id")),
    )
    op.create_table(
        "subscription_plans",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("monthly_price", sa.BigInteger(), nullable=False),
        sa.Column("yearly_price", sa.BigInteger(), nullable=False),
        sa.Column("included_minutes", sa.BigInteger(), nullable=False),
        sa.Column("max_agents", sa.BigInteger(), nullable=False),
        sa.Column("overage_rate_per_minute", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column("overage_rate_per_agent", sa.Numeric(precision=18, scale=6), nullable=False),
        sa.Column(
            "features",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("trial_days", sa.BigInteger(), nullable=True),
        sa.Column("sort_order", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("stripe_product_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_monthly_price_id", sa.String(length=255), nullable=True),
        sa.Column("stripe_yearly_price_id", sa.String(length=255), nullable=True),
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
            "currency ~ '^[a-z]{3}$'", name=op.f("ck_subscription_plans_currency_iso")
        ),
        sa.CheckConstraint(
            "slug ~ '^[a-z0-9][a-z0-9_-]*$'", name=op.f("ck_subscription_plans_slug_format")
        ),
        sa.CheckConstraint(
            "included_minutes >= 0",
            name=op.f("ck_subscription_plans_included_minutes_not_negative"),
        ),
        sa.CheckConstraint(
            "max_agents >= 1", name=op.f("ck_subscription_plans_max_agents_positive")
        ),
        sa.CheckConstraint(
            "monthly_price >= 0 AND yearly_price >= 0",
            name=op.f("ck_subscription_plans_prices_not_negative"),
        ),
        sa.CheckConstraint(
            "overage_rate_per_minute >= 0 AND overage_rate_per_agent >= 0",
            name=op.f("ck_subscription_plans_overage_rates_not_negative"),
        ),
        sa.CheckConstraint(
            "trial_days IS NULL OR trial_days >= 0",
            name=op.f("ck_subscription_plans_trial_days_not_negative"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_plans")),
        sa.UniqueConstraint("name", name=op.f("uq_subscription_plans_name")),
        sa.UniqueConstraint("slug", name=op.f("uq_subscription_plans_slug")),
        sa.UniqueConstraint(
            "stripe_monthly_price_id", name=op.f("uq_subscription_plans_stripe_monthly_price_id")
        ),
        sa.UniqueConstraint(
            "stripe_product_id", name=op.f("uq_subscription_plans_stripe_product_id")
        ),
        sa.UniqueConstraint(
            "stripe_yearly_price_id", name=op.f("uq_subscription_plans_stripe_yearly_price_id")
        ),
    )
    op.create_index(
        op.f("ix_subscription_plans_is_active"), "subscription_plans", ["is_active"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_subscription_plans_is_active"), table_name="subscription_plans")
    op.drop_table("subscription_plans")
    op.drop_table("customers")
    op.drop_index(op.f("ix_add_ons_is_active"), table_name="add_ons")
    op.drop_table("add_ons")
