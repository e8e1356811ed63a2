"""notification deliveries: each channel's state, attempts and last answer

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 23:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("notification_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_response", sa.Text(), nullable=True),
        sa.Column("last_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "channel IN ('email', 'dashboard')",
            name=op.f("ck_notification_deliveries_channel_known"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'sent', 'skipped', 'dead')",
            name=op.f("ck_notification_deliveries_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"],
            ["notifications.id"],
            name=op.f("fk_notification_deliveries_notification_id_notifications"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_notification_deliveries_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint(
            "notification_id",
            "channel",
            name=op.f("uq_notification_deliveries_notification_id_channel"),
        ),
    )
    op.create_index(
        "ix_notification_deliveries_pending_per_customer",
        "notification_deliveries",
        ["customer_id", "channel", "notification_id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_notification_deliveries_pending_due",
        "notification_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    # `failed` was never written (nothing sent before this revision); `dead` replaces it.
    op.execute("UPDATE notifications SET status = 'dead' WHERE status = 'failed'")
    op.drop_constraint(op.f("ck_notifications_status_known"), "notifications", type_="check")
    op.create_check_constraint(
        op.f("ck_notifications_status_known"),
        "notifications",
        "status IN ('pending', 'sent', 'dead')",
    )
    # The notices written before delivery existed are still owed: one delivery per channel.
    op.execute(
        "INSERT INTO notification_deliveries"
        " (notification_id, customer_id, channel, next_attempt_at, created_at)"
        " SELECT n.id, n.customer_id, c.channel, now(), now()"
        " FROM notifications n CROSS JOIN (VALUES ('email'), ('dashboard')) AS c(channel)"
        " WHERE n.status = 'pending'"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_notifications_status_known"), "notifications", type_="check")
    op.execute("UPDATE notifications SET status = 'failed' WHERE status = 'dead'")
    op.create_check_constraint(
        op.f("ck_notifications_status_known"),
        "notifications",
        "status IN ('pending', 'sent', 'failed')",
    )
    op.drop_table("notification_deliveries")
