from datetime import timedelta
from decimal import Decimal

from app.core.periods import UsagePeriod
from app.usage.projection import project_minutes
from tests.usage.helpers import at

PERIOD = UsagePeriod(at("2026-11-01T00:00"), at("2026-12-01T00:00"))


def test_projection_is_linear_on_elapsed_time() -> None:
    # 10 days of 30 elapsed: three times the minutes so far.
    assert project_minutes(Decimal(100), PERIOD, at("2026-11-11T00:00")) == Decimal(300)


def test_projection_counts_at_least_one_day_elapsed() -> None:
    one_hour_in = PERIOD.start + timedelta(hours=1)
    assert project_minutes(Decimal(10), PERIOD, one_hour_in) == Decimal(300)


def test_projection_never_falls_below_the_minutes_used() -> None:
    assert project_minutes(Decimal(0), PERIOD, at("2026-11-20T00:00")) == Decimal(0)
    assert project_minutes(Decimal(7), PERIOD, PERIOD.end) == Decimal(7)
