"""Building blocks shared by the domains' request and response models."""

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import Path as FastApiPath
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StringConstraints,
    field_validator,
)


def _format_rate(value: Decimal) -> str:
    # "2.5", not "2.500000" or "2.5E+0": the exact value, readable.
    return format(value.normalize(), "f")


# A rate in minor units (2.5 = two and a half cents), exact: sent and received as a decimal
# string in JSON so no float ever touches it.
def _six_decimal_places(value: Decimal) -> Decimal:
    # Also brings "0E-1000000" (zero, with an exponent PostgreSQL cannot store) to 0.000000.
    return value.quantize(Decimal("0.000001"))


Rate = Annotated[
    Decimal,
    Field(ge=0, le=Decimal(10**12), max_digits=18, decimal_places=6, allow_inf_nan=False),
    AfterValidator(_six_decimal_places),
    PlainSerializer(_format_rate, return_type=str, when_used="json"),
]
# An amount in the currency's minor units (cents). Bounded so no input overflows a column.
# A dashboard user id in a URL path: what a token's user id may be (no NUL, which PostgreSQL
# text cannot hold, so it is a 422 here rather than a database error).
DashboardUserIdPath = Annotated[
    str, FastApiPath(min_length=1, max_length=255, pattern=r"^[^\x00]+$")
]
MinorUnits = Annotated[int, Field(ge=0, le=10**12, strict=True)]
CurrencyCode = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z]{3}$", to_lower=True, strip_whitespace=True)
]
Slug = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", min_length=1, max_length=64),
]
FeatureFlags = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=64)], StrictBool],
    Field(max_length=100),
]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _contains_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(key) or _contains_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(_contains_nul(item) for item in value)
    return False


_WITHOUT_TEXT = (int, float, Decimal, date, type(None))


class InputSchema(BaseModel):
    # Unknown fields are refused: a typo in a field name must not silently do nothing.
    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _refuse_nul_characters(cls, value: object) -> object:
        # PostgreSQL text cannot hold NUL; refuse it here as bad input, not as a 500 later.
        # Numbers, times and flags, most values, are passed over at once.
        if isinstance(value, _WITHOUT_TEXT):
            return value
        if _contains_nul(value):
            raise ValueError("must not contain NUL characters")
        return value


class SuccessResponse(BaseModel):
    success: Literal[True] = True


# A payment method id as a client may send it: Stripe's `pm_...`, or the `card_...`/`src_...`
# of cards saved before PaymentMethods existed (Stripe's payment-method endpoints answer those
# too, and an adopted customer's list shows them). Anything else (another object's id, dots,
# slashes or spaces that could reach a Stripe URL path, more than the 255 characters Stripe's
# ids may use) is a 422 here rather than a call to Stripe.
PAYMENT_METHOD_ID_PATTERN = r"^(pm|card|src)_[A-Za-z0-9_]+$"
PAYMENT_METHOD_ID_MAX_LENGTH = 255
PaymentMethodId = Annotated[
    str,
    StringConstraints(pattern=PAYMENT_METHOD_ID_PATTERN, max_length=PAYMENT_METHOD_ID_MAX_LENGTH),
    Field(examples=["pm_1QxYzAbCdEfGhIjKlMnOpQrS"]),
]
