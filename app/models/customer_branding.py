from sqlalchemy import CheckConstraint, ForeignKey, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampedMixin

LOGO_MEDIA_TYPES = ("image/png", "image/svg+xml")
MAX_LOGO_BYTES = 512 * 1024


class CustomerBranding(TimestampedMixin, Base):
    """A white-label customer's branding: the seller their invoice PDFs show.

    Set by a billing admin; customers without a row get the service's own branding from
    settings. Values are stored as validated (`app.invoices.branding_validation`): the colour
    as lower-case `#rrggbb`, the logo as the checked PNG or SVG bytes.
    """

    __tablename__ = "customer_brandings"
    __table_args__ = (
        CheckConstraint("primary_color ~ '^#[0-9a-f]{6}$'", name="primary_color_hex"),
        CheckConstraint(
            "logo_media_type IS NULL OR logo_media_type IN ('image/png', 'image/svg+xml')",
            name="logo_media_type_known",
        ),
        CheckConstraint(
            "(logo IS NULL) = (logo_media_type IS NULL) AND (logo IS NULL) = (logo_sha256 IS NULL)",
            name="logo_complete",
        ),
        CheckConstraint(f"octet_length(logo) <= {MAX_LOGO_BYTES}", name="logo_size"),
    )

    # One branding per customer: the key is the customer.
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="RESTRICT"), primary_key=True
    )
    company_name: Mapped[str] = mapped_column(String(200))
    # Lines separated by "\n".
    address: Mapped[str | None] = mapped_column(Text)
    tax_id: Mapped[str | None] = mapped_column(String(64))
    primary_color: Mapped[str] = mapped_column(String(7))
    footer_text: Mapped[str | None] = mapped_column(Text)
    invoice_number_prefix: Mapped[str | None] = mapped_column(String(20))
    logo: Mapped[bytes | None] = mapped_column(LargeBinary)
    logo_media_type: Mapped[str | None] = mapped_column(String(32))
    logo_sha256: Mapped[str | None] = mapped_column(String(64))
