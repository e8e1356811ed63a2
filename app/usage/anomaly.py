"""Usage anomalies: a UTC day far above the customer's usual days.

An hourly arq cron job, never the ingestion path (a record must not wait for a 15-day scan).
The rule: a day's minutes exceed three times the subscription's average day over the 14 UTC
days before it (days without calls count as zero), and reach at least 60 minutes, so a
customer whose usual day is a handful of calls is not alerted for an ordinary busy one. Only
a subscription at least 14 days old is judged: before that there is no trailing average.

Each run looks at today so far (a spike is reported the hour it happens) and at yesterday
(whose last hour the previous run did not see). The alert is one `usage_anomaly` row per
subscription and day: `period_start` is the day's start, resource `minutes`, threshold 300
(percent of the average); the table's unique constraint makes every later run that finds
the same day insert nothing.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.alerts import service as alerts_service
from app.usage import read_models

logger = structlog.get_logger(__name__)

TRAILING_DAYS = 14
ANOMALY_FACTOR = 3
MINIMUM_DAY_MINUTES = Decimal(60)
ALERT_THRESHOLD_PERCENT = ANOMALY_FACTOR * 100


@dataclass(frozen=True, slots=True)
class AnomalousDay:
    subscription_id: int
    customer_id: int
    day: date
    minutes: Decimal
    trailing_average: Decimal


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


async def find_anomalous_days(session: AsyncSession, day: date) -> list[AnomalousDay]:
    """The subscriptions whose minutes on `day` are an anomaly, in one set-based query."""
    rows = await read_models.anomalous_days(
        session,
        day=day,
        trailing_days=TRAILING_DAYS,
        factor=ANOMALY_FACTOR,
        minimum_minutes=MINIMUM_DAY_MINUTES,
        subscribed_before=day_start(day - timedelta(days=TRAILING_DAYS)),
    )
    return [
        AnomalousDay(
            subscription_id=row.subscription_id,
            customer_id=row.customer_id,
            day=day,
            minutes=row.minutes,
            trailing_average=row.trailing_minutes / TRAILING_DAYS,
        )
        for row in rows
    ]


async def record_anomaly_alerts(
    session: AsyncSession, days: list[AnomalousDay], now: datetime
) -> int:
    """One alert per subscription and day; returns how many are new."""
    created = 0
    for found in days:
        average = found.trailing_average.quantize(Decimal("0.1"))
        raised = await alerts_service.raise_usage_anomaly_alert(
            session,
            customer_id=found.customer_id,
            subscription_id=found.subscription_id,
            day_start=day_start(found.day),
            threshold_percent=ALERT_THRESHOLD_PERCENT,
            message=(
                f"Call minutes on {found.day.isoformat()} ({found.minutes.normalize():f}) "
                f"are more than {ANOMALY_FACTOR}x the average day of the previous "
                f"{TRAILING_DAYS} days ({average:f})."
            ),
            now=now,
        )
        if raised:
            created += 1
            logger.info(
                "usage_anomaly_alert",
                subscription_id=found.subscription_id,
                day=found.day.isoformat(),
                minutes=str(found.minutes),
            )
    return created


async def alert_on_anomalous_days(
    *, sessionmaker: async_sessionmaker[AsyncSession], now: datetime
) -> int:
    """Alert on today's and yesterday's anomalous days; returns alerts created."""
    today = now.astimezone(UTC).date()
    created = 0
    async with sessionmaker.begin() as session:
        for day in (today - timedelta(days=1), today):
            created += await record_anomaly_alerts(
                session, await find_anomalous_days(session, day), now
            )
    return created
