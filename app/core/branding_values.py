"""Branding values that both the settings (the service's own branding) and a customer's
branding accept: a colour and an invoice number prefix. Kept here, free of the imaging
libraries that checking a logo needs, so reading the settings loads neither.
"""

import re

_HEX_COLOR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")
_NUMBER_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,19}$")


class BrandingValueError(ValueError):
    """A branding value that cannot be used; the message says why, for the admin."""


def normalize_hex_color(value: str) -> str:
    """`#RGB` or `#RRGGBB` (any case) as lower-case `#rrggbb`."""
    text = value.strip()
    if not _HEX_COLOR.match(text):
        raise BrandingValueError(
            f"{value!r} is not a hex colour: use #RRGGBB (or #RGB), for example #1f4e79."
        )
    digits = text[1:].lower()
    if len(digits) == 3:
        digits = "".join(digit * 2 for digit in digits)
    return f"#{digits}"


def normalize_number_prefix(value: str | None) -> str | None:
    """An invoice number prefix ("ACME-"), or None for none; letters, digits and `.-_/`."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not _NUMBER_PREFIX.match(text):
        raise BrandingValueError(
            "The invoice number prefix is 1 to 20 characters: letters, digits and . - _ /, "
            "starting with a letter or digit."
        )
    return text
