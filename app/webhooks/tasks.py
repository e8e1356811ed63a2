"""arq jobs: process one event, sweep up what the queue lost, purge old payloads."""

from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings
from app.webhooks import repository
from app.webhooks.processing import ProcessingResult, process_event
from app.webhooks.service import enqueue_processing

# An event this fresh is presumably still in the queue; the sweeper leaves it to its job.
SWEEP_GRACE = timedelta(seconds=30)
SWEEP_BATCH = 500


async def process_stripe_event(ctx: dict[str, Any], stripe_event_id: str) -> str:
    settings: Settings = ctx["settings"]
    result: ProcessingResult = await process_event(
        sessionmaker=ctx["sessionmaker"],
        gateway=ctx["stripe_gateway"],
        clock=ctx["clock"],
        stripe_event_id=stripe_event_id,
        max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
    )
    if result.outcome == "retry" and result.retry_in is not None:
        # The next attempt as its own job; should Redis lose it, the sweeper finds the
        # event by its `next_attempt_at`.
        await enqueue_processing(
            ctx["redis"], stripe_event_id, attempt=result.attempts, defer=result.retry_in
        )
    return result.outcome


async def sweep_stripe_events(ctx: dict[str, Any]) -> int:
    """Enqueue every stored event that is due and not processed: the database is the truth,
    the queue only a messenger (Redis was down, a worker died mid-handler)."""
    sessionmaker: async_sessionmaker[AsyncSession] = ctx["sessionmaker"]
    clock: Clock = ctx["clock"]
    redis: ArqRedis = ctx["redis"]
    now = clock.now()
    async with sessionmaker() as session:
        due = await repository.due_for_processing(
            session, now=now, received_before=now - SWEEP_GRACE, limit=SWEEP_BATCH
        )
    for event in due:
        # A job id of its own per sweep: the id of an attempt whose job ended without
        # claiming the event may still be held by arq.
        sweep = f"{event.attempts}-sweep-{int(now.timestamp())}"
        await enqueue_processing(redis, event.stripe_event_id, attempt=sweep)
    return len(due)


async def purge_stripe_event_payloads(ctx: dict[str, Any]) -> int:
    """Drop payloads past the retention period; the event rows stay as the record."""
    settings: Settings = ctx["settings"]
    sessionmaker: async_sessionmaker[AsyncSession] = ctx["sessionmaker"]
    clock: Clock = ctx["clock"]
    now = clock.now()
    async with sessionmaker.begin() as session:
        return await repository.purge_payloads(
            session,
            received_before=now - timedelta(days=settings.WEBHOOK_PAYLOAD_RETENTION_DAYS),
            now=now,
        )
