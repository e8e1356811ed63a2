"""What the stores hold, read when `/metrics` is scraped.

These values are the same for every process (rows by status, the queue's length), so they
are read from PostgreSQL and Redis at scrape time instead of being counted in one process.
A store that does not answer leaves its gauges out and sets `billing_metrics_source_up` to 0:
the scrape itself still succeeds.
"""

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import structlog
from arq.connections import ArqRedis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.models.notification import NOTIFICATION_STATUSES
from app.models.stripe_event import STRIPE_EVENT_STATUSES
from app.notifications import service as notifications_service
from app.webhooks import admin_service as webhooks_admin_service

logger = structlog.get_logger(__name__)

# A scrape that hangs on a store is worse than one without its gauges.
READ_TIMEOUT_SECONDS = 2


@dataclass(frozen=True, slots=True)
class DatabaseReadings:
    webhook_events_by_status: dict[str, int]
    oldest_pending_webhook_age_seconds: float | None
    notifications_by_status: dict[str, int]


async def read_database(
    sessionmaker: async_sessionmaker[AsyncSession], clock: Clock
) -> DatabaseReadings | None:
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS), sessionmaker() as session:
            webhook_events = await webhooks_admin_service.event_stats(session, clock=clock)
            notifications = await notifications_service.count_by_status(session)
    except (SQLAlchemyError, OSError, TimeoutError) as error:
        logger.warning("metrics_database_unreadable", error=str(error) or type(error).__name__)
        return None
    return DatabaseReadings(
        webhook_events_by_status=webhook_events.by_status,
        oldest_pending_webhook_age_seconds=webhook_events.oldest_pending_age_seconds,
        notifications_by_status=notifications,
    )


async def read_queue_depth(redis: ArqRedis) -> int | None:
    """Jobs waiting in arq's queue (a sorted set: queued and deferred jobs)."""
    try:
        async with asyncio.timeout(READ_TIMEOUT_SECONDS):
            return int(await redis.zcard(redis.default_queue_name))
    except (RedisError, OSError, TimeoutError) as error:
        logger.warning("metrics_queue_unreadable", error=str(error) or type(error).__name__)
        return None


def _by_status(
    name: str, documentation: str, known: Iterable[str], counts: dict[str, int]
) -> GaugeMetricFamily:
    # Every known status, zeros included, so a series does not vanish while its count is 0.
    family = GaugeMetricFamily(name, documentation, labels=["status"])
    for status in sorted({*known, *counts}):
        family.add_metric([status], counts.get(status, 0))
    return family


class StoreReadingsCollector(Collector):
    def __init__(self, database: DatabaseReadings | None, queue_depth: int | None) -> None:
        self.database = database
        self.queue_depth = queue_depth

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "billing_metrics_source_up",
            "Whether a store answered this scrape (1) or its gauges are missing (0).",
            labels=["source"],
        )
        up.add_metric(["database"], int(self.database is not None))
        up.add_metric(["redis"], int(self.queue_depth is not None))
        yield up
        if self.database is not None:
            yield _by_status(
                "billing_stripe_events",
                "Stored Stripe webhook events by processing status.",
                STRIPE_EVENT_STATUSES,
                self.database.webhook_events_by_status,
            )
            yield GaugeMetricFamily(
                "billing_stripe_events_oldest_pending_age_seconds",
                "How long the oldest unprocessed Stripe event has waited (0: none waiting).",
                value=self.database.oldest_pending_webhook_age_seconds or 0,
            )
            yield _by_status(
                "billing_notifications",
                "Notifications in the outbox by status (pending: written, not sent yet).",
                NOTIFICATION_STATUSES,
                self.database.notifications_by_status,
            )
        if self.queue_depth is not None:
            yield GaugeMetricFamily(
                "billing_arq_queue_depth",
                "Jobs in the worker's queue, waiting or deferred.",
                value=self.queue_depth,
            )


async def render_store_readings(
    sessionmaker: async_sessionmaker[AsyncSession], redis: ArqRedis, clock: Clock
) -> bytes:
    """The store gauges in Prometheus' text format."""
    database, queue_depth = await asyncio.gather(
        read_database(sessionmaker, clock), read_queue_depth(redis)
    )
    registry = CollectorRegistry()
    registry.register(StoreReadingsCollector(database, queue_depth))
    return generate_latest(registry)
