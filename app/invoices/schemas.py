from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from app.core.branding_values import (
    BrandingValueError,
    normalize_hex_color,
    normalize_number_prefix,
)
from app.core.schemas import InputSchema, Schema, SuccessResponse
from app.invoices.branding_validation import LOGO_MEDIA_TYPES, MAX_LOGO_BYTES


def _hex_color(value: str) -> str:
    try:
        return normalize_hex_color(value)
    except BrandingValueError as error:
        raise ValueError(str(error)) from None


def _number_prefix(value: str | None) -> str | None:
    try:
        return normalize_number_prefix(value)
    except BrandingValueError as error:
        raise ValueError(str(error)) from None


def _blank_to_none(value: str | None) -> str | None:
    return value if value is None or value.strip() else None


HexColor = Annotated[str, Field(max_length=7, examples=["#1f4e79"]), AfterValidator(_hex_color)]
# Optional text: surrounding blanks trimmed, and nothing but blanks means none.
TaxId = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=64)] | None,
    AfterValidator(_blank_to_none),
]
FooterText = Annotated[
    Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)] | None,
    AfterValidator(_blank_to_none),
]
NumberPrefix = Annotated[
    Annotated[str, StringConstraints(max_length=20)] | None, AfterValidator(_number_prefix)
]
AddressLine = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=120)]
# Base64 of at most 512 KB is 699,052 characters; a little more is let through so a file just
# over the limit is refused with the size in the reason, not as a malformed field.
_MAX_LOGO_BASE64 = 4 * ((2 * MAX_LOGO_BYTES + 2) // 3) + 16


class LogoUpload(InputSchema):
    media_type: str = Field(max_length=100, description=f"One of {', '.join(LOGO_MEDIA_TYPES)}.")
    data: str = Field(
        max_length=_MAX_LOGO_BASE64,
        description="The file, base64-encoded (standard alphabet); at most 512 KB decoded.",
    )


class BrandingUpdate(InputSchema):
    """A customer's whole branding: what is left out is cleared (PUT replaces)."""

    company_name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
    ]
    address_lines: list[AddressLine] = Field(default_factory=list, max_length=6)
    tax_id: TaxId = None
    primary_color: HexColor = Field(
        default="#333333", description="#RRGGBB or #RGB; stored as lower-case #rrggbb."
    )
    footer_text: FooterText = None
    invoice_number_prefix: NumberPrefix = Field(
        default=None,
        description="Printed before Stripe's invoice number: letters, digits and . - _ /.",
    )
    logo: LogoUpload | None = Field(default=None, description="PNG or SVG; null for none.")


class LogoPublic(Schema):
    media_type: str
    size_bytes: int
    sha256: str
    data: str = Field(description="The file, base64-encoded.")


class BrandingPublic(Schema):
    customer_id: str = Field(description="The dashboard user id of the customer.")
    company_name: str
    address_lines: list[str]
    tax_id: str | None
    primary_color: str
    footer_text: str | None
    invoice_number_prefix: str | None
    logo: LogoPublic | None
    updated_at: datetime


class BrandingResponse(SuccessResponse):
    branding: BrandingPublic | None = Field(
        description="Null: the customer's PDFs carry the service's own branding."
    )
