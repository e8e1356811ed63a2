"""invoice documents and customer branding (and the rates on overage charges)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 15:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_brandings",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("company_name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("tax_id", sa.String(length=64), nullable=True),
        sa.Column("primary_color", sa.String(length=7), nullable=False),
        sa.Column("footer_text", sa.Text(), nullable=True),
        sa.Column("invoice_number_prefix", sa.String(length=20), nullable=True),
        sa.Column("logo", sa.LargeBinary(), nullable=True),
        sa.Column("logo_media_type", sa.String(length=32), nullable=True),
        sa.Column("logo_sha256", sa.String(length=64), nullable=True),
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
            "logo_media_type IS NULL OR logo_media_type IN ('image/png', 'image/svg+xml')",
            name=op.f("ck_customer_brandings_logo_media_type_known"),
        ),
        sa.CheckConstraint(
            "primary_color ~ '^#[0-9a-f]{6}$'", name=op.f("ck_customer_brandings_primary_color_hex")
        ),
        sa.CheckConstraint(
            "(logo IS NULL) = (logo_media_type IS NULL) AND (logo IS NULL) = (logo_sha256 IS NULL)",
            name=op.f("ck_customer_brandings_logo_complete"),
        ),
        sa.CheckConstraint(
            "octet_length(logo) <= 524288", name=op.f("ck_customer_brandings_logo_size")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_brandings_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_brandings")),
    )
    op.create_table(
        "invoice_documents",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("stripe_invoice_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("invoice_number", sa.String(length=128), nullable=False),
        sa.Column("invoice_status", sa.String(length=32), nullable=False),
        sa.Column("branding", sa.String(length=16), nullable=False),
        sa.Column("template_version", sa.String(length=32), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rendered_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "branding IN ('customer', 'default')", name=op.f("ck_invoice_documents_branding_known")
        ),
        sa.CheckConstraint(
            "sha256 ~ '^[0-9a-f]{64}$'", name=op.f("ck_invoice_documents_sha256_hex")
        ),
        sa.CheckConstraint(
            "size_bytes = octet_length(pdf)", name=op.f("ck_invoice_documents_size_matches")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_invoice_documents_customer_id_customers"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_documents")),
        sa.UniqueConstraint(
            "stripe_invoice_id", name=op.f("uq_invoice_documents_stripe_invoice_id")
        ),
    )
    op.create_index(
        op.f("ix_invoice_documents_customer_id"), "invoice_documents", ["customer_id"], unique=False
    )
    op.add_column(
        "overage_charges",
        sa.Column("rate_per_minute", sa.Numeric(precision=18, scale=6), nullable=True),
    )
    op.add_column(
        "overage_charges",
        sa.Column("rate_per_agent", sa.Numeric(precision=18, scale=6), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("overage_charges", "rate_per_agent")
    op.drop_column("overage_charges", "rate_per_minute")
    op.drop_index(op.f("ix_invoice_documents_customer_id"), table_name="invoice_documents")
    op.drop_table("invoice_documents")
    op.drop_table("customer_brandings")
