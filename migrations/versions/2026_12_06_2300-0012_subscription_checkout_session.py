"""subscriptions: the Stripe Checkout Session a reservation is paid through

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 23:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("subscriptions", sa.Column("checkout_session_id", sa.String(255), nullable=True))
    op.create_unique_constraint(
        "uq_subscriptions_checkout_session_id", "subscriptions", ["checkout_session_id"]
    )


def downgrade() -> None:
    op.drop_constraint("uq_subscriptions_checkout_session_id", "subscriptions", type_="unique")
    op.drop_column("subscriptions", "checkout_session_id")
