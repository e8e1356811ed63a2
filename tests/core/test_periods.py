from datetime import UTC, datetime

import pytest

from app.core.periods import add_months, usage_period_containing


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("anchor", "moment", "start", "end"),
    [
        ("2026-01-15T10:00", "2026-03-20T00:00", "2026-03-15T10:00", "2026-04-15T10:00"),
        ("2026-01-15T10:00", "2026-03-15T09:59", "2026-02-15T10:00", "2026-03-15T10:00"),
        ("2026-01-15T10:00", "2026-03-15T10:00", "2026-03-15T10:00", "2026-04-15T10:00"),
        # An anchor on the 31st: February's period starts on its last day, March's on the 31st.
        ("2026-01-31T00:00", "2026-03-01T00:00", "2026-02-28T00:00", "2026-03-31T00:00"),
        ("2026-01-31T00:00", "2026-04-15T12:00", "2026-03-31T00:00", "2026-04-30T00:00"),
        # A yearly subscription still has monthly usage periods.
        ("2025-11-25T12:00", "2026-11-25T11:00", "2026-10-25T12:00", "2026-11-25T12:00"),
    ],
)
def test_the_period_holding_a_moment(anchor: str, moment: str, start: str, end: str) -> None:
    period = usage_period_containing(at(anchor), at(moment))
    assert (period.start, period.end) == (at(start), at(end))
    assert period.contains(at(moment))


def test_months_are_added_from_the_anchor_and_clamped() -> None:
    assert add_months(at("2024-01-31T00:00"), 1) == at("2024-02-29T00:00")
    assert add_months(at("2026-12-15T00:00"), 1) == at("2027-01-15T00:00")
    assert add_months(at("2026-03-31T00:00"), -1) == at("2026-02-28T00:00")
