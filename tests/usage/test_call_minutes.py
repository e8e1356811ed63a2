from decimal import Decimal

import pytest

from app.usage.call_minutes import minutes_for_call


@pytest.mark.parametrize(
    ("seconds", "per_second", "per_minute"),
    [
        ("0", "0.0000", "0"),
        ("1", "0.0167", "1"),
        ("59.9", "0.9983", "1"),
        ("60", "1.0000", "1"),
        ("61", "1.0167", "2"),
        ("90", "1.5000", "2"),
        ("3", "0.0500", "1"),
        # 0.003 s is 0.00005 minutes: half up to the fourth place.
        ("0.003", "0.0001", "1"),
        ("86400", "1440.0000", "1440"),
    ],
)
def test_a_calls_duration_becomes_minutes_by_the_plans_rounding(
    seconds: str, per_second: str, per_minute: str
) -> None:
    assert minutes_for_call(Decimal(seconds), "per_second") == Decimal(per_second)
    assert minutes_for_call(Decimal(seconds), "per_minute") == Decimal(per_minute)
