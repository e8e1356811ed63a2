"""Money: integer minor units with an ISO 4217 currency, and the one rounding rule.

Amounts are never floats. Prices are stored and sent to Stripe as integers in the currency's
minor unit (cents for USD). Rates that are fractions of a minor unit (an overage rate of 2.5
cents per minute) are `Decimal`; a rate times a quantity is rounded exactly once, by
`round_to_minor_units`, at the point where it becomes a charge.

For people (invoice PDFs), an amount is converted from minor units to the currency's major
unit in one place, `Money.major_units`, with Stripe's exponent of the currency, and written
out with Babel's locale data by `format_money` / `format_minor_unit_rate`.
"""

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import format_currency

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


# Stripe's minor units (docs: "Supported currencies", zero- and three-decimal currencies);
# every other currency has two decimals in Stripe's API, including the "special cases" (ISK,
# HUF, TWD), whose API amounts stay two-decimal.
_ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
_THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])


def minor_unit_exponent(currency: str) -> int:
    """How many decimal places Stripe's integer amounts of `currency` stand for."""
    code = normalize_currency(currency)
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


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

    @property
    def major_units(self) -> Decimal:
        """The amount in the currency's major unit (1999 cents -> 19.99), exact."""
        return Decimal(self.amount).scaleb(-minor_unit_exponent(self.currency))


def format_money(money: Money, locale: str) -> str:
    """`money` as people read it in `locale`: "$1,234.50", "1.234,50 €", "¥1,234".

    The value comes from `major_units` (Stripe's exponent); the number of decimals shown is
    the currency's own (ISO 4217, from Babel), which is the same except for ISK, where Stripe
    keeps two decimals that are always zero."""
    return format_currency(money.major_units, money.currency.upper(), locale=locale)


def format_minor_unit_rate(rate: Decimal, currency: str, locale: str) -> str:
    """A rate in minor units (2.5 cents a minute) in major units, every digit kept: "$0.025".

    Rates are not amounts: they are never rounded for display, or a line would not show the
    rate it was billed at."""
    major = rate.scaleb(-minor_unit_exponent(currency))
    return format_currency(
        major, normalize_currency(currency).upper(), locale=locale, decimal_quantization=False
    )
