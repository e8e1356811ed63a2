"""Money: integer minor units with an ISO 4217 currency, and the one rounding rule.

Amounts are never floats. Prices are stored and sent to Stripe as integers in the currency's
minor unit (cents for USD). Rates that are fractions of a minor unit (an overage rate of 2.5
cents per minute) are `Decimal`; a rate times a quantity is rounded exactly once, by
`round_to_minor_units`, at the point where it becomes a charge.
"""

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

_CURRENCY_CODE = re.compile(r"^[a-z]{3}$")


def normalize_currency(code: str) -> str:
    """Lower-case ISO 4217 code, as Stripe writes it; raises ValueError for anything else."""
    normalized = code.strip().lower()
    if not _CURRENCY_CODE.match(normalized):
        raise ValueError(f"not an ISO 4217 currency code: {code!r}")
    return normalized


def round_to_minor_units(amount: Decimal) -> int:
    """Round an amount in minor units to a whole minor unit, half up (away from zero).

    The rule: 0.5 of a minor unit and above rounds up, below 0.5 rounds down; negative amounts
    (credits) mirror it (-2.5 becomes -3). This is the only rounding in the service: apply it
    once, to the final amount of a charge, never to intermediate values.
    """
    if not amount.is_finite():
        raise ValueError(f"cannot round a non-finite amount: {amount}")
    return int(amount.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True, slots=True)
class Money:
    """An amount in integer minor units of one currency."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise TypeError("Money.amount must be an int of minor units")
        object.__setattr__(self, "currency", normalize_currency(self.currency))

    @classmethod
    def from_rate(cls, rate: Decimal, quantity: Decimal | int, currency: str) -> "Money":
        """A charge of `quantity` units at `rate` minor units each, rounded once."""
        return cls(round_to_minor_units(rate * Decimal(quantity)), currency)

    def _check_same_currency(self, other: "Money") -> None:
        if other.currency != self.currency:
            raise ValueError(f"currency mismatch: {self.currency} and {other.currency}")

    def __add__(self, other: "Money") -> "Money":
        self._check_same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: "Money") -> "Money":
        self._check_same_currency(other)
        return Money(self.amount - other.amount, self.currency)
