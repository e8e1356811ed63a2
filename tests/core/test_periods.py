from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise

import pytest

from app.core.periods import (
    AnchorChange,
    UsagePeriod,
    add_months,
    usage_period_at,
    usage_period_containing,
)


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


def test_a_moment_is_placed_by_the_anchor_in_force_then_and_the_stub_is_cut_at_the_change() -> None:
    first = datetime(2026, 1, 31, 9, 0, tzinfo=UTC)
    switched = datetime(2026, 3, 10, 15, 0, tzinfo=UTC)
    changes = [AnchorChange(effective_at=switched, from_anchor=first, to_anchor=switched)]

    # Before the switch: months from the 31st (February clamped), the last one cut short.
    assert usage_period_at(switched, changes, datetime(2026, 2, 27, tzinfo=UTC)) == UsagePeriod(
        datetime(2026, 1, 31, 9, 0, tzinfo=UTC), datetime(2026, 2, 28, 9, 0, tzinfo=UTC)
    )
    assert usage_period_at(switched, changes, datetime(2026, 3, 10, 14, 59, 59, tzinfo=UTC)) == (
        UsagePeriod(datetime(2026, 2, 28, 9, 0, tzinfo=UTC), switched)
    )
    # From the switch: months from the new anchor.
    assert usage_period_at(switched, changes, switched) == UsagePeriod(
        switched, datetime(2026, 4, 10, 15, 0, tzinfo=UTC)
    )
    # No history: the anchor alone.
    assert usage_period_at(first, [], datetime(2026, 3, 30, tzinfo=UTC)) == UsagePeriod(
        datetime(2026, 2, 28, 9, 0, tzinfo=UTC), datetime(2026, 3, 31, 9, 0, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    "anchor",
    [
        datetime(2026, 1, 31, 12, 30, tzinfo=UTC),
        datetime(2024, 2, 29, 0, 0, tzinfo=UTC),
        datetime(2026, 3, 15, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_the_period_found_before_answers_exactly_as_a_fresh_one(anchor: datetime) -> None:
    # Moments forwards, backwards and onto the boundaries, so the period kept from the call
    # before is reused where it holds the moment and replaced where it does not.
    boundaries = [add_months(anchor.astimezone(UTC), months) for months in range(-3, 16)]
    steps = [anchor + timedelta(hours=7 * step) for step in range(0, 24 * 400 // 7)]
    inner = boundaries[1:-1]
    moments = steps + inner + [b - timedelta(microseconds=1) for b in inner]
    moments += list(reversed(steps))[::5]
    for moment in moments:
        # The answer by definition: the anchor's months, searched one by one.
        [expected] = [
            UsagePeriod(start, end) for start, end in pairwise(boundaries) if start <= moment < end
        ]
        assert usage_period_containing(anchor, moment) == expected
