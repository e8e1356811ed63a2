"""Which subscription and usage period a record belongs to, and until when it is accepted.

- A subscription holds usage from its start (the earlier of the row's creation and its
  current period's start) until it ended (`ended_at`, else its last period's end, for a
  canceled one); one that never started (`pending`, `incomplete`, `incomplete_expired`)
  holds none. A timestamp held by none of the customer's subscriptions is
  `no_active_subscription`.
- Within it, the record belongs to the monthly usage period holding its timestamp, counted
  from the billing anchor in force at that timestamp (the anchor history; else the current
  period's start), cut where the anchor moved: `app.core.periods.usage_period_at`.
- A record is accepted until 35 days after its period closed (or the subscription ended, if
  that came first); later it is `usage_too_late`. A period already billed still takes it: the
  overage job bills the difference as an adjustment.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from app.core.periods import AnchorChange, UsagePeriod, usage_period_at
from app.usage.errors import NoActiveSubscription, UsageTooLate

LATE_RECORD_WINDOW = timedelta(days=35)
# Clocks of the telephony backend and ours disagree a little; more than this is a bug.
FUTURE_TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class SubscriptionTerms:
    """What ingestion needs to know of one of the customer's subscriptions."""

    subscription_id: int
    status: str
    anchor: datetime
    starts_at: datetime
    ends_at: datetime | None
    trial_end: datetime | None
    call_rounding: str
    minutes_included: int
    agents_allowed: int
    # Oldest first; `anchor` is the one in force after the last.
    anchor_changes: tuple[AnchorChange, ...] = ()

    def holds(self, moment: datetime) -> bool:
        return self.starts_at <= moment and (self.ends_at is None or moment < self.ends_at)


@dataclass(frozen=True, slots=True)
class Placement:
    terms: SubscriptionTerms
    period: UsagePeriod


def place_record(
    subscriptions: Sequence[SubscriptionTerms],
    occurred_at: datetime,
    now: datetime,
    *,
    periods: dict[int, UsagePeriod] | None = None,
) -> Placement:
    """The subscription and period of a record at `occurred_at`, received at `now`.

    `periods`, when given, keeps the period last found per subscription, so the records of a
    batch that fall in one period do not compute it each."""
    holding = [terms for terms in subscriptions if terms.holds(occurred_at)]
    if not holding:
        raise NoActiveSubscription()
    # Subscriptions of one customer do not overlap; if data says otherwise, the newest wins.
    terms = max(holding, key=lambda candidate: (candidate.starts_at, candidate.subscription_id))
    period = periods.get(terms.subscription_id) if periods is not None else None
    if period is None or not period.start <= occurred_at < period.end:
        period = usage_period_at(terms.anchor, terms.anchor_changes, occurred_at)
        if periods is not None:
            periods[terms.subscription_id] = period
    closed_at = period.end if terms.ends_at is None else min(period.end, terms.ends_at)
    if now > closed_at + LATE_RECORD_WINDOW:
        raise UsageTooLate()
    return Placement(terms=terms, period=period)
