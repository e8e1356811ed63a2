from decimal import Decimal

import pytest

from app.core.money import Money, normalize_currency, round_to_minor_units


@pytest.mark.parametrize(
    ("amount", "expected"),
    [
        ("2.4999", 2),
        ("2.5", 3),
        ("3.5", 4),  # half up, not banker's rounding (which gives 4 here and 2 for 2.5)
        ("-2.5", -3),
        ("-2.4", -2),
        ("0", 0),
    ],
)
def test_rounding_is_half_up_to_the_minor_unit(amount: str, expected: int) -> None:
    assert round_to_minor_units(Decimal(amount)) == expected


def test_a_charge_from_a_rate_rounds_once() -> None:
    # 333 minutes at 2.5 cents = 832.5 cents -> 833; rounding each minute first would give 999.
    assert Money.from_rate(Decimal("2.5"), 333, "usd") == Money(833, "usd")


def test_money_refuses_floats_and_mixed_currencies() -> None:
    with pytest.raises(TypeError):
        Money(10.5, "usd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="currency mismatch"):
        Money(100, "usd") + Money(100, "eur")
    with pytest.raises(ValueError):
        round_to_minor_units(Decimal("NaN"))


def test_currency_codes_are_iso_and_lower_case() -> None:
    assert normalize_currency(" USD ") == "usd"
    assert Money(5, "EUR").currency == "eur"
    with pytest.raises(ValueError):
        normalize_currency("dollars")
