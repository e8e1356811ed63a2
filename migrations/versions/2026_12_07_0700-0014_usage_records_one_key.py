"""usage records: one key to their subscription and its customer, instead of one on each

A record's (subscription_id, customer_id) now refers to subscriptions (id, customer_id): it
also holds that a record's customer is its subscription's, and PostgreSQL checks one key per
record inserted instead of two. The index on customer_id alone goes: every read by customer
goes by (customer_id, call_id), and the key's checks on a subscription's delete use
(subscription_id, period_start).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 07:00:00+00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "fk_usage_records_subscription_id_subscriptions"


def upgrade() -> None:
    op.create_unique_constraint(
        "uq_subscriptions_id_customer_id", "subscriptions", ["id", "customer_id"]
    )
    op.drop_constraint(KEY, "usage_records", type_="foreignkey")
    # NOT VALID: enforced from now on for every new or changed record, while the records
    # already stored (each checked by the two keys this replaces) are validated below, outside
    # this transaction, where validating does not block ingestion on a large table.
    op.create_foreign_key(
        KEY,
        "usage_records",
        "subscriptions",
        ["subscription_id", "customer_id"],
        ["id", "customer_id"],
        ondelete="RESTRICT",
        postgresql_not_valid=True,
    )
    op.drop_constraint("fk_usage_records_customer_id_customers", "usage_records", "foreignkey")
    op.drop_index("ix_usage_records_customer_id", table_name="usage_records")
    with op.get_context().autocommit_block():
        op.execute(f"ALTER TABLE usage_records VALIDATE CONSTRAINT {KEY}")


def downgrade() -> None:
    op.create_index("ix_usage_records_customer_id", "usage_records", ["customer_id"])
    op.create_foreign_key(
        "fk_usage_records_customer_id_customers",
        "usage_records",
        "customers",
        ["customer_id"],
        ["id"],
        ondelete="RESTRICT",
    )
    op.drop_constraint(KEY, "usage_records", type_="foreignkey")
    op.create_foreign_key(
        KEY, "usage_records", "subscriptions", ["subscription_id"], ["id"], ondelete="RESTRICT"
    )
    op.drop_constraint("uq_subscriptions_id_customer_id", "subscriptions", type_="unique")
