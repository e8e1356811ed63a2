"""Usage periods: monthly for both billing cycles, anchored on the subscription's billing anchor.

A yearly subscription has twelve usage periods a year, so its included minutes, agent limit
and overage are monthly too. Period k runs from the anchor plus k months to the anchor plus
k + 1 months; a month without the anchor's day ends on its last day (an anchor on the 31st
gives a period from February 28th), as Stripe does for its own billing periods. Days are UTC.

The anchor moves (a switch of billing cycle restarts Stripe's cycle at the moment of the
switch; a trial ended early, at its end). A moment is placed by the anchor in force at that
moment (`usage_period_at`, from the subscription's anchor history), so the period a record
belongs to never changes after the fact. The period running when the anchor moved is cut
there: a *stub* period, from its start to the change. The stub rule: it is a usage period
of its own, closed by the change, with the plan's full monthly allowance (not prorated),
like the last period of a subscription canceled mid-period; the customer was held to that
monthly limit while it ran. The next period starts at the new anchor.
"""

import calendar
from collections.abc import Sequence
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


# The period found last for each anchor. The quota check asks for the current period of the
# same subscriptions all day, and a period holds every moment from its start to its end:
# the anchor's periods divide time, so the one found before is the answer whenever it holds
# the moment, exactly as if computed again (calendar arithmetic was a twentieth of a check).
_LAST_PERIOD_BY_ANCHOR: dict[datetime, UsagePeriod] = {}
_LAST_PERIODS_KEPT = 10_000


def usage_period_containing(anchor: datetime, moment: datetime) -> UsagePeriod:
    """The monthly usage period of a subscription anchored at `anchor` that holds `moment`."""
    last = _LAST_PERIOD_BY_ANCHOR.get(anchor)
    if last is not None and last.start <= moment < last.end:
        return last
    period = _period_containing(anchor, moment)
    if len(_LAST_PERIOD_BY_ANCHOR) >= _LAST_PERIODS_KEPT:
        _LAST_PERIOD_BY_ANCHOR.clear()
    _LAST_PERIOD_BY_ANCHOR[anchor] = period
    return period


def _period_containing(anchor: datetime, moment: datetime) -> UsagePeriod:
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


@dataclass(frozen=True, slots=True)
class AnchorChange:
    """The billing anchor moved from `from_anchor` to `to_anchor` at `effective_at`."""

    effective_at: datetime
    from_anchor: datetime
    to_anchor: datetime


def usage_period_at(
    anchor: datetime, changes: Sequence[AnchorChange], moment: datetime
) -> UsagePeriod:
    """The usage period holding `moment`, counted from the anchor in force at `moment`
    (`changes` oldest first; `anchor` is the one in force after the last of them) and cut
    at the anchor changes on either side of it (the stub rule, in the module docstring)."""
    in_force = changes[0].from_anchor if changes else anchor
    since: datetime | None = None
    until: datetime | None = None
    for index, change in enumerate(changes):
        if change.effective_at > moment:
            until = change.effective_at
            break
        since = change.effective_at
        in_force = change.to_anchor if index < len(changes) - 1 else anchor
    period = usage_period_containing(in_force, moment)
    start = max(period.start, since) if since is not None else period.start
    end = min(period.end, until) if until is not None else period.end
    return UsagePeriod(start, end)
