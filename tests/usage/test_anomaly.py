"""The hourly usage-anomaly check: a UTC day above 3x the trailing 14-day average."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.models import Subscription, UsageAlert, UsageDailyTotals
from app.usage.tasks import detect_usage_anomalies
from tests.factories import create_customer, create_subscription
from tests.running_jobs import job_ctx

TODAY = date(2026, 11, 25)


async def _subscription(
    session: AsyncSession, dashboard_user_id: str, *, age_days: int = 60
) -> Subscription:
    customer = await create_customer(session, dashboard_user_id=dashboard_user_id)
    started_at = datetime.combine(TODAY, datetime.min.time(), UTC) - timedelta(days=age_days)
    return await create_subscription(session, customer=customer, created_at=started_at)


async def _days(
    session: AsyncSession, subscription: Subscription, minutes: dict[date, str]
) -> None:
    for day, used in minutes.items():
        session.add(
            UsageDailyTotals(subscription_id=subscription.id, day=day, minutes_used=Decimal(used))
        )
    await session.commit()


def _trailing(day: date, minutes: str) -> dict[date, str]:
    return {day - timedelta(days=offset): minutes for offset in range(1, 15)}


def _ctx(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], clock: FrozenClock
) -> dict[str, Any]:
    return job_ctx(settings=settings, clock=clock, sessionmaker=sessionmaker)


async def test_a_day_above_three_times_the_trailing_average_alerts_once(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    settings: Settings,
) -> None:
    spiking = await _subscription(session, "1")
    # Average 20 a day: 61 minutes is above 3 x 20 and above the 60-minute floor.
    await _days(session, spiking, {**_trailing(TODAY, "20"), TODAY: "61"})
    exactly_three_times = await _subscription(session, "2")
    await _days(session, exactly_three_times, {**_trailing(TODAY, "30"), TODAY: "90"})
    too_small = await _subscription(session, "3")
    # 59 minutes against an average of 2: far above it, but below the minimum volume.
    await _days(session, too_small, {TODAY - timedelta(days=3): "28", TODAY: "59"})
    too_young = await _subscription(session, "4", age_days=5)
    await _days(session, too_young, {TODAY - timedelta(days=1): "10", TODAY: "500"})

    created = [await detect_usage_anomalies(_ctx(settings, sessionmaker, clock)) for _ in range(3)]

    assert created == [1, 0, 0]
    [alert] = (await session.scalars(select(UsageAlert))).all()
    assert alert.subscription_id == spiking.id
    assert (alert.kind, alert.resource, alert.threshold) == ("usage_anomaly", "minutes", 300)
    assert alert.period_start == datetime(2026, 11, 25, tzinfo=UTC)
    assert alert.acknowledged_at is None
    assert "61" in alert.message and "20.0" in alert.message


async def test_yesterdays_spike_is_found_by_the_first_run_of_today(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    settings: Settings,
) -> None:
    subscription = await _subscription(session, "1")
    yesterday = TODAY - timedelta(days=1)
    # Days without calls count as zero: 140 minutes over 14 days is an average of 10.
    await _days(session, subscription, {yesterday - timedelta(days=2): "140", yesterday: "75"})
    clock.set(datetime(2026, 11, 25, 0, 23, tzinfo=UTC))

    assert await detect_usage_anomalies(_ctx(settings, sessionmaker, clock)) == 1
    clock.advance(timedelta(hours=1))
    assert await detect_usage_anomalies(_ctx(settings, sessionmaker, clock)) == 0

    [alert] = (await session.scalars(select(UsageAlert))).all()
    assert alert.period_start == datetime(2026, 11, 24, tzinfo=UTC)
