"""The read models of usage: the one-row joins the hot reads answer from, and the scans of
the daily counters. They read `subscriptions`, plans and add-ons beside the usage tables,
on purpose: the quota check the dialer calls before every call must stay one indexed
statement, so it joins here instead of asking three domains' services.
"""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.core.db import DriverStatement, StatementTarget
from app.models import Subscription, UsageDailyTotals
from app.models.subscription import LIVE_STATUSES


@dataclass(frozen=True, slots=True)
class AccountUsageState:
    """One customer's current subscription with its plan, add-ons and latest counters."""

    customer_id: int
    subscription_id: int | None
    status: str | None
    anchor: datetime | None
    current_period_end: datetime | None
    trial_end: datetime | None
    grace_period_ends_at: datetime | None
    suspended_at: datetime | None
    dunning_invoice_id: str | None
    next_payment_retry_at: datetime | None
    payment_overdue_at: datetime | None
    plan_id: int | None
    plan_slug: str | None
    plan_name: str | None
    currency: str | None
    minutes_included: int
    agents_allowed: int
    overage_rate_per_minute: Decimal
    overage_rate_per_agent: Decimal
    features: dict[str, Any]
    add_ons: list[dict[str, Any]]
    totals_period_start: datetime | None
    minutes_used: Decimal
    peak_agents: int


_LIVE_FIRST = "s.status IN ({})".format(", ".join(f"'{status}'" for status in LIVE_STATUSES))

# On the driver directly (DriverStatement): the dialer sends it before every call.
_ACCOUNT_USAGE_STATE = DriverStatement(
    text(
        f"""
    SELECT c.id AS customer_id, s.id AS subscription_id, s.status,
           COALESCE(s.billing_cycle_anchor, s.current_period_start, s.created_at) AS anchor,
           s.current_period_end, s.trial_end, s.grace_period_ends_at, c.suspended_at,
           s.dunning_invoice_id, s.next_payment_retry_at, s.payment_overdue_at,
           p.id AS plan_id, p.slug AS plan_slug, p.name AS plan_name, p.currency,
           COALESCE(p.included_minutes, 0) + COALESCE(a.extra_minutes, 0) AS minutes_included,
           COALESCE(p.max_agents, 0) + COALESCE(a.extra_agents, 0) AS agents_allowed,
           COALESCE(p.overage_rate_per_minute, 0) AS overage_rate_per_minute,
           COALESCE(p.overage_rate_per_agent, 0) AS overage_rate_per_agent,
           COALESCE(p.features, '{{}}'::jsonb) AS features,
           COALESCE(a.lines, '[]'::jsonb) AS add_ons,
           t.period_start AS totals_period_start,
           COALESCE(t.minutes_used, 0) AS minutes_used,
           COALESCE(t.peak_agents, 0) AS peak_agents
    FROM customers c
    -- The live subscription (one per customer, by a partial unique index), else the latest.
    LEFT JOIN LATERAL (
        SELECT * FROM subscriptions s
        WHERE s.customer_id = c.id
        ORDER BY {_LIVE_FIRST} DESC, s.id DESC
        LIMIT 1
    ) s ON true
    LEFT JOIN subscription_plans p ON p.id = s.plan_id
    LEFT JOIN LATERAL (
        SELECT SUM(ao.extra_minutes * sa.quantity) AS extra_minutes,
               SUM(ao.extra_agents * sa.quantity) AS extra_agents,
               jsonb_agg(jsonb_build_object(
                   'addon_id', ao.id, 'slug', ao.slug, 'name', ao.name,
                   'quantity', sa.quantity,
                   'extra_minutes', ao.extra_minutes * sa.quantity,
                   'extra_agents', ao.extra_agents * sa.quantity,
                   'features', ao.features) ORDER BY sa.id) AS lines
        FROM subscription_add_ons sa
        JOIN add_ons ao ON ao.id = sa.add_on_id
        WHERE sa.subscription_id = s.id
    ) a ON true
    -- The latest period's counters (unique index on subscription_id, period_start); the
    -- caller checks it is the current period.
    LEFT JOIN LATERAL (
        SELECT period_start, minutes_used, peak_agents FROM usage_period_totals t
        WHERE t.subscription_id = s.id AND t.period_start <= :now
        ORDER BY t.period_start DESC
        LIMIT 1
    ) t ON true
    WHERE c.dashboard_user_id = :dashboard_user_id
    """  # noqa: S608 (built from this module's constant fragments, never from input)
    )
)


async def get_account_usage_state(
    session: StatementTarget, *, dashboard_user_id: str, now: datetime
) -> AccountUsageState | None:
    """One indexed read for the quota check and the summary; None for an unknown customer."""
    row = await _ACCOUNT_USAGE_STATE.fetchrow(
        session, {"dashboard_user_id": dashboard_user_id, "now": now}
    )
    if row is None:
        return None
    # JSON columns arrive decoded: SQLAlchemy sets the driver's codec on each connection.
    return AccountUsageState(**row)


_DAILY_MINUTES = text(
    """
    SELECT day, minutes_used FROM usage_daily_totals
    WHERE subscription_id = :subscription_id AND day BETWEEN :first_day AND :last_day
    ORDER BY day
    """
)


async def daily_minutes(
    session: AsyncSession, *, subscription_id: int, first_day: date, last_day: date
) -> dict[date, Decimal]:
    rows = await session.execute(
        _DAILY_MINUTES,
        {"subscription_id": subscription_id, "first_day": first_day, "last_day": last_day},
    )
    return {row.day: row.minutes_used for row in rows}


@dataclass(frozen=True, slots=True)
class DayAgainstTrailing:
    subscription_id: int
    customer_id: int
    minutes: Decimal
    trailing_minutes: Decimal


async def anomalous_days(
    session: AsyncSession,
    *,
    day: date,
    trailing_days: int,
    factor: int,
    minimum_minutes: Decimal,
    subscribed_before: datetime,
) -> list[DayAgainstTrailing]:
    """The subscriptions whose minutes on `day` exceed `factor` times their average over the
    `trailing_days` before it, set-based. Reads `subscriptions` for the owner and the age: a
    read model of the usage tables, like the others here."""
    trailing = aliased(UsageDailyTotals)
    trailing_minutes = (
        select(func.coalesce(func.sum(trailing.minutes_used), 0))
        .where(
            trailing.subscription_id == UsageDailyTotals.subscription_id,
            trailing.day >= day - timedelta(days=trailing_days),
            trailing.day < day,
        )
        .scalar_subquery()
    )
    rows = (
        await session.execute(
            select(
                UsageDailyTotals.subscription_id,
                Subscription.customer_id,
                UsageDailyTotals.minutes_used,
                trailing_minutes,
            )
            .join(Subscription, Subscription.id == UsageDailyTotals.subscription_id)
            .where(
                UsageDailyTotals.day == day,
                UsageDailyTotals.minutes_used >= minimum_minutes,
                Subscription.created_at <= subscribed_before,
                # minutes > factor x (sum / days), without dividing: exact in numeric.
                UsageDailyTotals.minutes_used * trailing_days > factor * trailing_minutes,
            )
            .order_by(UsageDailyTotals.subscription_id)
        )
    ).all()
    return [
        DayAgainstTrailing(subscription_id, customer_id, Decimal(minutes), Decimal(trailing_sum))
        for subscription_id, customer_id, minutes, trailing_sum in rows
    ]
