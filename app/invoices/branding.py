"""Whose name, colours and logo an invoice PDF carries: the customer's white label, or the
service's own from settings."""

import hashlib
from dataclasses import dataclass
from typing import Literal

from app.core.branding_values import BrandingValueError
from app.core.config import ConfigurationError, Settings
from app.invoices.branding_validation import (
    PNG_MEDIA_TYPE,
    SVG_MEDIA_TYPE,
    ValidatedLogo,
    validate_logo,
)
from app.models import CustomerBranding

BrandingSource = Literal["customer", "default"]


@dataclass(frozen=True, slots=True)
class SellerBranding:
    source: BrandingSource
    company_name: str
    address_lines: tuple[str, ...]
    tax_id: str | None
    primary_color: str
    footer_text: str | None
    number_prefix: str | None
    logo: ValidatedLogo | None

    def invoice_number(self, stripe_number: str) -> str:
        """The number printed on the PDF: the prefix, then Stripe's number as it is.

        Stripe's number stays whole (it is what the customer's bank transfer and Stripe's
        own emails quote); the prefix only adds to it."""
        return f"{self.number_prefix or ''}{stripe_number}"


def default_branding(settings: Settings) -> SellerBranding:
    """The service's own branding; raises ConfigurationError for a logo file that is missing
    or fails the checks a customer's logo must pass (call it at start-up)."""
    logo = None
    path = settings.INVOICE_LOGO_PATH
    if path is not None:
        media_type = {".png": PNG_MEDIA_TYPE, ".svg": SVG_MEDIA_TYPE}.get(path.suffix.lower())
        if media_type is None:
            raise ConfigurationError("INVOICE_LOGO_PATH must be a .png or .svg file")
        try:
            data = path.read_bytes()
        except OSError as error:
            raise ConfigurationError(f"INVOICE_LOGO_PATH cannot be read: {error}") from None
        try:
            logo = validate_logo(data, media_type)
        except BrandingValueError as error:
            raise ConfigurationError(f"INVOICE_LOGO_PATH: {error}") from None
    return SellerBranding(
        source="default",
        company_name=settings.INVOICE_SELLER_NAME,
        address_lines=tuple(settings.INVOICE_SELLER_ADDRESS),
        tax_id=settings.INVOICE_SELLER_TAX_ID or None,
        primary_color=settings.INVOICE_PRIMARY_COLOR,
        footer_text=settings.INVOICE_FOOTER_TEXT or None,
        number_prefix=settings.INVOICE_NUMBER_PREFIX or None,
        logo=logo,
    )


def customer_branding(row: CustomerBranding) -> SellerBranding:
    """A white-label customer's branding, as stored (validated when it was set)."""
    logo = None
    if row.logo is not None and row.logo_media_type is not None:
        logo = ValidatedLogo(
            row.logo_media_type, row.logo, row.logo_sha256 or hashlib.sha256(row.logo).hexdigest()
        )
    return SellerBranding(
        source="customer",
        company_name=row.company_name,
        address_lines=tuple(line for line in (row.address or "").splitlines() if line.strip()),
        tax_id=row.tax_id,
        primary_color=row.primary_color,
        footer_text=row.footer_text,
        number_prefix=row.invoice_number_prefix,
        logo=logo,
    )
