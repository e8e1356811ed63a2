from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import Clock
from app.models import StripeEvent
from app.webhooks import repository
from app.webhooks.errors import WebhookEventNotFound
from app.webhooks.processing import reset_for_replay
from app.webhooks.schemas import WebhookEventStats


async def list_events(
    session: AsyncSession,
    *,
    clock: Clock,
    status: str | None,
    event_type: str | None,
    limit: int,
) -> tuple[Sequence[StripeEvent], WebhookEventStats]:
    events = await repository.list_events(
        session, status=status, event_type=event_type, limit=limit
    )
    return events, await event_stats(session, clock=clock)


async def event_stats(session: AsyncSession, *, clock: Clock) -> WebhookEventStats:
    """Stored events by status, and how long the oldest unprocessed one has waited."""
    oldest_pending = await repository.oldest_pending_received_at(session)
    return WebhookEventStats(
        by_status=await repository.count_by_status(session),
        oldest_pending_age_seconds=(clock.now() - oldest_pending).total_seconds()
        if oldest_pending
        else None,
    )


async def mark_for_replay(
    session: AsyncSession, *, clock: Clock, stripe_event_id: str
) -> StripeEvent:
    event = await repository.get_event(session, stripe_event_id)
    if event is None:
        raise WebhookEventNotFound()
    await reset_for_replay(session, event, clock.now())
    await session.flush()
    return event


async def mark_for_replay_by_row(
    session: AsyncSession, *, clock: Clock, row_id: int
) -> StripeEvent:
    """`mark_for_replay` for the event stored as row `row_id` (the operator console's id)."""
    event = await repository.get_event_by_row_id(session, row_id)
    if event is None:
        raise WebhookEventNotFound()
    return await mark_for_replay(session, clock=clock, stripe_event_id=event.stripe_event_id)
