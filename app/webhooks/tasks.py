"""arq jobs: process one event, sweep up what the queue lost, purge old payloads."""

from datetime import timedelta

from app.jobs.context import JobContext, job
from app.webhooks import repository
from app.webhooks.processing import ProcessingResult, process_event
from app.webhooks.service import enqueue_processing

# An event this fresh is presumably still in the queue; the sweeper leaves it to its job.
SWEEP_GRACE = timedelta(seconds=30)
SWEEP_BATCH = 500


@job
async def process_stripe_event(context: JobContext, stripe_event_id: str) -> str:
    result: ProcessingResult = await process_event(
        sessionmaker=context.sessionmaker,
        gateway=context.stripe_gateway,
        clock=context.clock,
        stripe_event_id=stripe_event_id,
        max_attempts=context.settings.WEBHOOK_MAX_ATTEMPTS,
        settings=context.settings,
    )
    if result.outcome == "retry" and result.retry_in is not None:
        # The next attempt as its own job; should Redis lose it, the sweeper finds the
        # event by its `next_attempt_at`.
        await enqueue_processing(
            context.redis, stripe_event_id, attempt=result.attempts, defer=result.retry_in
        )
    return result.outcome


@job
async def sweep_stripe_events(context: JobContext) -> int:
    """Enqueue every stored event that is due and not processed: the database is the truth,
    the queue only a messenger (Redis was down, a worker died mid-handler)."""
    now = context.clock.now()
    async with context.read() as session:
        due = await repository.due_for_processing(
            session, now=now, received_before=now - SWEEP_GRACE, limit=SWEEP_BATCH
        )
    for event in due:
        # A job id of its own per sweep: the id of an attempt whose job ended without
        # claiming the event may still be held by arq.
        sweep = f"{event.attempts}-sweep-{int(now.timestamp())}"
        await enqueue_processing(context.redis, event.stripe_event_id, attempt=sweep)
    return len(due)


@job
async def purge_stripe_event_payloads(context: JobContext) -> int:
    """Drop payloads past the retention period; the event rows stay as the record."""
    now = context.clock.now()
    retention = timedelta(days=context.settings.WEBHOOK_PAYLOAD_RETENTION_DAYS)
    async with context.transaction() as session:
        return await repository.purge_payloads(
            session,
            received_before=now - retention,
            now=now,
        )
