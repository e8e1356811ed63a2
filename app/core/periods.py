"""Usage periods: monthly for both billing cycles, anchored on the subscription's billing anchor.

A yearly subscription has twelve usage periods a year, so its included minutes, agent limit
and overage are monthly too. Period k runs from the anchor plus k months to the anchor plus
k + 1 months; a month without the anchor's day ends on its last day (an anchor on the 31st
gives a period from February 28th), as Stripe does for its own billing periods. Days are UTC.
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True, slots=True)
class UsagePeriod:
    start: datetime
    end: datetime

    def contains(self, moment: datetime) -> bool:
        return self.start <= moment < self.end


def add_months(moment: datetime, months: int) -> datetime:
    """`moment` moved by whole months, clamped to the end of a shorter month."""
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def _anchored(anchor: datetime, months: int) -> datetime:
    # Always counted from the anchor itself, never from the previous period's start, so a
    # clamped February does not shift every later period to the 28th.
    return add_months(anchor, months)


def usage_period_containing(anchor: datetime, moment: datetime) -> UsagePeriod:
    """The monthly usage period of a subscription anchored at `anchor` that holds `moment`."""
    anchor = anchor.astimezone(UTC)
    moment = moment.astimezone(UTC)
    months = (moment.year - anchor.year) * 12 + (moment.month - anchor.month)
    # The estimate may be one off either way (day and time within the month); settle it.
    start = _anchored(anchor, months)
    if start > moment:
        months -= 1
    elif _anchored(anchor, months + 1) <= moment:
        months += 1
    return UsagePeriod(_anchored(anchor, months), _anchored(anchor, months + 1))
