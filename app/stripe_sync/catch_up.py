"""Catching up on the events Stripe has that we never stored (a delivery lost for good, or
the endpoint down longer than Stripe retries): stored the way the webhook stores them, then
processed here, oldest first."""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.stripe_gateway.client import StripeGateway
from app.webhooks import service as webhooks_service
from app.webhooks.processing import process_event

logger = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class CatchUpReport:
    # Where the listing started: `--since`, else the newest event stored (None: all of
    # Stripe's 30 days).
    since: datetime | None
    listed: int
    stored: int
    outcomes: dict[str, int]


async def catch_up_events(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    since: datetime | None,
    max_attempts: int,
) -> CatchUpReport:
    """Store the events Stripe lists that we never received, the way the webhook stores
    them, and process them here, oldest first."""
    if since is None:
        async with sessionmaker() as session:
            since = await webhooks_service.newest_stored_event_time(session)
    # `created` has one-second resolution: from the newest stored second on (not after it),
    # or a missed event of that same second would never be listed. Those we have are
    # found by their id.
    events = await gateway.list_events(created_from=since)
    stored: list[str] = []
    async with sessionmaker.begin() as session:
        for event in events:
            if await webhooks_service.store_event_if_new(session, event, received_at=clock.now()):
                stored.append(event.id)
    outcomes: Counter[str] = Counter()
    for stripe_event_id in stored:
        result = await process_event(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            stripe_event_id=stripe_event_id,
            max_attempts=max_attempts,
        )
        outcomes[result.outcome] += 1
        logger.info("stripe_event_caught_up", event_id=stripe_event_id, outcome=result.outcome)
    return CatchUpReport(
        since=since, listed=len(events), stored=len(stored), outcomes=dict(outcomes)
    )
