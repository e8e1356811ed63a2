"""dunning: the service's own payment retries, and the subscription's dunning state

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 21:30:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("dunning_invoice_id", sa.String(255), nullable=True))
    op.add_column("subscriptions", sa.Column("last_decline_code", sa.String(64), nullable=True))
    op.add_column(
        "subscriptions",
        sa.Column("next_payment_retry_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.add_column(
        "subscriptions",
        sa.Column(
            "dunning_action_required", sa.Boolean(), server_default=sa.text("false"), nullable=False
        ),
    )
    op.add_column(
        "subscriptions",
        sa.Column(
            "dunning_auto_advance_off",
            sa.Boolean(),
            server_default=sa.text("false"),
            nullable=False,
        ),
    )
    op.add_column(
        "subscriptions",
        sa.Column("payment_overdue_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        op.f("ix_subscriptions_dunning_invoice_id"), "subscriptions", ["dunning_invoice_id"]
    )
    op.create_table(
        "payment_retries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(255), nullable=False),
        sa.Column("attempt", sa.BigInteger(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(16), server_default="scheduled", nullable=False),
        sa.Column("payment_method_id", sa.String(255), nullable=True),
        sa.Column("decline_code", sa.String(64), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('scheduled', 'running', 'succeeded', 'failed', 'action_required', "
            "'canceled')",
            name=op.f("ck_payment_retries_status_known"),
        ),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_payment_retries_attempt_positive")),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_payment_retries_subscription_id_subscriptions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_retries")),
        sa.UniqueConstraint(
            "stripe_invoice_id", "attempt", name="uq_payment_retries_invoice_attempt"
        ),
    )
    op.create_index(
        op.f("ix_payment_retries_subscription_id"), "payment_retries", ["subscription_id"]
    )
    op.create_index("ix_payment_retries_status_due_at", "payment_retries", ["status", "due_at"])
    op.create_index(
        "uq_payment_retries_one_running_per_subscription",
        "payment_retries",
        ["subscription_id"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_table("payment_retries")
    op.drop_index(op.f("ix_subscriptions_dunning_invoice_id"), table_name="subscriptions")
    for column in (
        "payment_overdue_at",
        "dunning_auto_advance_off",
        "dunning_action_required",
        "next_payment_retry_at",
        "last_decline_code",
        "dunning_invoice_id",
    ):
        op.drop_column("subscriptions", column)
