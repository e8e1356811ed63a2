"""GET usage/: the current usage period of the customer's subscription, for the dashboard.

Overage, so far and projected, is computed by the rules that bill it (`app.usage.overage`:
plan plus add-ons, each line rounded once, nothing for a period that began in a trial), so
the dashboard shows what the invoice will say.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.accounts import AccountReference
from app.core.periods import UsagePeriod, usage_period_containing
from app.models.subscription import LIVE_STATUSES
from app.subscriptions.errors import SubscriptionNotFound
from app.usage import read_models
from app.usage.call_minutes import MINUTE_PLACES
from app.usage.errors import CustomerNotFound
from app.usage.overage import OverageAmounts, OverageTerms, began_in_trial, compute_overage
from app.usage.projection import project_minutes
from app.usage.schemas import DailyUsage, OverageSummary, UsageSummary

# A `pending` subscription is a subscribe still talking to Stripe: nothing to show yet.
_SUMMARIZED_STATUSES = frozenset(LIVE_STATUSES) - {"pending"}


def _summary(amounts: OverageAmounts) -> OverageSummary:
    return OverageSummary(
        minutes=amounts.minutes_over.quantize(MINUTE_PLACES),
        agents=amounts.agents_over,
        minutes_amount=amounts.minutes_amount,
        agents_amount=amounts.agents_amount,
        amount=amounts.amount,
    )


async def _daily_series(
    session: AsyncSession, subscription_id: int, period: UsagePeriod, now: datetime
) -> list[DailyUsage]:
    # UTC days from the period's first to today; a day the period shares with the previous
    # one (the anchor's time is rarely midnight) shows that whole day's minutes.
    first_day = period.start.astimezone(UTC).date()
    last_day = now.astimezone(UTC).date()
    minutes_by_day = await read_models.daily_minutes(
        session, subscription_id=subscription_id, first_day=first_day, last_day=last_day
    )
    return [
        DailyUsage(date=day, minutes=minutes_by_day.get(day, Decimal(0)))
        for day in (first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1))
    ]


async def usage_summary(
    session: AsyncSession, *, account: AccountReference, now: datetime
) -> UsageSummary:
    """Minutes and agents of the current period against the limits (plan plus add-ons),
    overage so far and projected to the period's end (app.usage.pricing), and a daily
    series. Two indexed reads: the account's state, then the period's days."""
    state = await read_models.get_account_usage_state(
        session, dashboard_user_id=account.dashboard_user_id, now=now
    )
    if state is None and account.by_service:
        raise CustomerNotFound()
    if (
        state is None
        or state.subscription_id is None
        or state.status not in _SUMMARIZED_STATUSES
        or state.anchor is None
        or state.currency is None
    ):
        raise SubscriptionNotFound()
    period = usage_period_containing(state.anchor, now)
    minutes_used, peak_agents = Decimal(0), 0
    if state.totals_period_start == period.start:
        minutes_used, peak_agents = state.minutes_used, state.peak_agents
    projected_minutes = project_minutes(minutes_used, period, now)
    terms = OverageTerms(
        included_minutes=state.minutes_included,
        agent_limit=state.agents_allowed,
        rate_per_minute=state.overage_rate_per_minute,
        rate_per_agent=state.overage_rate_per_agent,
        currency=state.currency,
    )
    in_trial = began_in_trial(period.start, state.trial_end)
    overage = compute_overage(
        terms, minutes_used=minutes_used, peak_agents=peak_agents, in_trial=in_trial
    )
    projected_overage = compute_overage(
        terms, minutes_used=projected_minutes, peak_agents=peak_agents, in_trial=in_trial
    )
    return UsageSummary(
        subscription_id=state.subscription_id,
        status=state.status,
        period_start=period.start,
        period_end=period.end,
        currency=state.currency,
        minutes_used=minutes_used,
        minutes_included=state.minutes_included,
        minutes_remaining=max(state.minutes_included - minutes_used, Decimal(0)),
        peak_agents=peak_agents,
        agents_allowed=state.agents_allowed,
        overage_rate_per_minute=state.overage_rate_per_minute,
        overage_rate_per_agent=state.overage_rate_per_agent,
        overage=_summary(overage),
        projected_minutes=projected_minutes.quantize(MINUTE_PLACES),
        projected_overage=_summary(projected_overage),
        daily=await _daily_series(session, state.subscription_id, period, now),
    )
