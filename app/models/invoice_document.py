from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Identity, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base


class InvoiceDocument(Base):
    """The PDF of a final Stripe invoice, stored the first time it was rendered.

    Every later download returns these bytes (checked against `sha256`), whatever happened to
    the branding or the template since: an invoice, once issued, does not change.

    Keyed by Stripe's invoice id, not by a billing-history row: rows move to an archive table
    (keeping their ids) and an overage row shares its invoice with the invoice's own row, but
    an invoice has one document.
    """

    __tablename__ = "invoice_documents"
    __table_args__ = (
        CheckConstraint("sha256 ~ '^[0-9a-f]{64}$'", name="sha256_hex"),
        CheckConstraint("size_bytes = octet_length(pdf)", name="size_matches"),
        CheckConstraint("branding IN ('customer', 'default')", name="branding_known"),
    )

    id: Mapped[int] = mapped_column(Identity(), primary_key=True)
    # Unique: two first downloads racing each other store one document.
    stripe_invoice_id: Mapped[str] = mapped_column(String(255), unique=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), index=True
    )
    # The number as printed: the branding's prefix and Stripe's number.
    invoice_number: Mapped[str] = mapped_column(String(128))
    # Stripe's status of the invoice when it was rendered (the PDF shows it "as of" then).
    invoice_status: Mapped[str] = mapped_column(String(32))
    # Whose branding it carries: the customer's own, or the service's default.
    branding: Mapped[str] = mapped_column(String(16))
    template_version: Mapped[str] = mapped_column(String(32))
    pdf: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int]
    rendered_at: Mapped[datetime]
