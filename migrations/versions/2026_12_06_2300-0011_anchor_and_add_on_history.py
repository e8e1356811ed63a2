"""anchor history, add-on history, overage credits to refund, overage rows per invoice

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 23:00:00+00:00
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _subscription_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["subscription_id"],
        ["subscriptions.id"],
        name=op.f(f"fk_{table}_subscription_id_subscriptions"),
        ondelete="RESTRICT",
    )


def _created_at() -> "sa.Column[datetime]":
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "subscription_anchor_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("from_anchor", sa.DateTime(timezone=True), nullable=False),
        sa.Column("to_anchor", sa.DateTime(timezone=True), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        _created_at(),
        _subscription_fk("subscription_anchor_changes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_anchor_changes")),
    )
    op.create_index(
        "ix_subscription_anchor_changes_lookup",
        "subscription_anchor_changes",
        ["subscription_id", "effective_at", "id"],
    )
    op.create_table(
        "subscription_add_on_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("add_on_id", sa.BigInteger(), nullable=False),
        sa.Column("from_quantity", sa.BigInteger(), nullable=False),
        sa.Column("to_quantity", sa.BigInteger(), nullable=False),
        sa.Column("effective_at", sa.DateTime(timezone=True), nullable=False),
        _created_at(),
        _subscription_fk("subscription_add_on_changes"),
        sa.ForeignKeyConstraint(
            ["add_on_id"],
            ["add_ons.id"],
            name=op.f("fk_subscription_add_on_changes_add_on_id_add_ons"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_add_on_changes")),
    )
    op.create_index(
        op.f("ix_subscription_add_on_changes_add_on_id"),
        "subscription_add_on_changes",
        ["add_on_id"],
    )
    op.create_index(
        "ix_subscription_add_on_changes_lookup",
        "subscription_add_on_changes",
        ["subscription_id", "effective_at", "id"],
    )

    _charge_statuses("'pending', 'invoiced', 'pending_next_invoice', 'refund_due'")
    for table in ("billing_history", "billing_history_archive"):
        op.drop_constraint(op.f(f"uq_{table}_overage_charge_id"), table, type_="unique")
        op.create_index(
            f"uq_{table}_overage_part",
            table,
            ["overage_charge_id", "stripe_invoice_id"],
            unique=True,
            postgresql_where=sa.text("overage_charge_id IS NOT NULL"),
            postgresql_nulls_not_distinct=True,
        )


def _charge_statuses(statuses: str) -> None:
    op.drop_constraint(op.f("ck_overage_charges_status_known"), "overage_charges", type_="check")
    op.create_check_constraint(
        op.f("ck_overage_charges_status_known"), "overage_charges", f"status IN ({statuses})"
    )


def downgrade() -> None:
    for table in ("billing_history", "billing_history_archive"):
        op.drop_index(f"uq_{table}_overage_part", table_name=table)
        op.create_unique_constraint(
            op.f(f"uq_{table}_overage_charge_id"), table, ["overage_charge_id"]
        )
    _charge_statuses("'pending', 'invoiced', 'pending_next_invoice'")
    op.drop_table("subscription_add_on_changes")
    op.drop_table("subscription_anchor_changes")
