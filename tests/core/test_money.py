from decimal import Decimal

import pytest

from app.core.money import (
    Money,
    format_minor_unit_rate,
    format_money,
    normalize_currency,
    round_to_minor_units,
)


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


@pytest.mark.parametrize(
    ("money", "locale", "expected"),
    [
        (Money(123_450, "usd"), "en_US", "$1,234.50"),
        (Money(-1_250, "usd"), "en_US", "-$12.50"),
        (Money(123_450, "eur"), "de_DE", "1.234,50\xa0€"),
        (Money(1_234, "jpy"), "en_US", "¥1,234"),  # zero-decimal: 1234 yen, not 12.34
        (Money(1_234, "kwd"), "en_US", "KWD1.234"),  # three decimals
    ],
)
def test_amounts_are_written_for_their_currency_and_locale(
    money: Money, locale: str, expected: str
) -> None:
    assert format_money(money, locale) == expected


def test_major_units_use_stripes_exponent() -> None:
    assert Money(1999, "usd").major_units == Decimal("19.99")
    assert Money(1999, "jpy").major_units == Decimal(1999)
    assert Money(1999, "bhd").major_units == Decimal("1.999")


def test_a_rate_keeps_every_digit() -> None:
    assert format_minor_unit_rate(Decimal("2.5"), "usd", "en_US") == "$0.025"
    assert format_minor_unit_rate(Decimal("1500"), "usd", "en_US") == "$15.00"
