"""The readers of Stripe's fields, the one set the gateway uses: every payload is a plain dict
(stripe-python's objects are turned into dicts as they arrive), and any field may be absent,
null or, in an older API version, of another shape.
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def nested(value: object, *keys: str) -> Any:
    """A nested field (`nested(invoice, "lines", "data")`); None where any step is missing."""
    for key in keys:
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def expandable_id(value: object) -> str | None:
    """An expandable field: the id, or the expanded object's id."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def from_timestamp(value: object) -> datetime | None:
    """A Stripe timestamp (Unix seconds) as an aware UTC datetime; None when absent."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return datetime.fromtimestamp(value, UTC)


def text(value: object) -> str | None:
    """A string field; None when absent or empty."""
    return value if isinstance(value, str) and value else None


def integer(value: object) -> int | None:
    """A whole-number field; None when absent (a bool is no number here)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def minor_units(value: object) -> int:
    """An amount in minor units that a record is written from: 0 where Stripe has none.

    Stripe's amounts are integers of the minor unit. Anything else is a payload we misread,
    and rounding it would put a made-up amount on the customer's record."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"Not an amount in minor units: {value!r}")
    return value


def amount_or_zero(value: object) -> int:
    """An amount in minor units, 0 where Stripe has none (what a document prints)."""
    return integer(value) or 0


def decimal(value: Any) -> Decimal | None:
    """A decimal field: stripe-python reads `*_decimal` strings as Decimal; floats (a tax
    rate's `percentage`) are read through their shortest repr, so 19.6 stays 19.6."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value)) if isinstance(value, float) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        return None
    return number if number.is_finite() else None


def metadata(value: object) -> dict[str, str]:
    """A `metadata` hash (Stripe keeps strings only)."""
    if not isinstance(value, Mapping):
        return {}
    return {str(key): str(item) for key, item in value.items()}
