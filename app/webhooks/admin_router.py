import uuid
from typing import Annotated, Literal

from arq.connections import ArqRedis
from fastapi import BackgroundTasks, Path, Query, Request

from app.core.auth import BillingAdmin
from app.core.db import SessionDep
from app.core.deps import ClockDep
from app.core.errors import Forbidden, Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.webhooks import admin_service, service
from app.webhooks.errors import WebhookEventNotFound
from app.webhooks.schemas import (
    WebhookEventListResponse,
    WebhookEventPublic,
    WebhookEventResponse,
)

router = SlashTolerantRouter(
    prefix="/admin/webhook-events",
    tags=["admin: webhooks"],
    responses=error_responses(Unauthorized, Forbidden),
)


@router.get("/", response_model=WebhookEventListResponse, summary="Stored Stripe events")
async def list_webhook_events(
    session: SessionDep,
    clock: ClockDep,
    _: BillingAdmin,
    status: Annotated[Literal["pending", "processed", "failed", "ignored"] | None, Query()] = None,
    type: Annotated[
        str | None,
        Query(max_length=255, pattern=r"^[a-z0-9_.]+$", description="`invoice.paid`, ..."),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> WebhookEventListResponse:
    """Newest first, with counts by status and the processing lag."""
    events, stats = await admin_service.list_events(
        session, clock=clock, status=status, event_type=type, limit=limit
    )
    return WebhookEventListResponse(
        webhook_events=[WebhookEventPublic.model_validate(event) for event in events],
        stats=stats,
    )


@router.post(
    "/{stripe_event_id}/replay/",
    response_model=WebhookEventResponse,
    responses=error_responses(WebhookEventNotFound),
    summary="Process an event again",
)
async def replay_webhook_event(
    request: Request,
    session: SessionDep,
    clock: ClockDep,
    background: BackgroundTasks,
    _: BillingAdmin,
    stripe_event_id: Annotated[str, Path(max_length=255, pattern=r"^[A-Za-z0-9_]+$")],
) -> WebhookEventResponse:
    event = await admin_service.mark_for_replay(
        session, clock=clock, stripe_event_id=stripe_event_id
    )
    redis: ArqRedis = request.app.state.redis
    background.add_task(
        service.enqueue_processing, redis, stripe_event_id, attempt=f"replay-{uuid.uuid4().hex}"
    )
    return WebhookEventResponse(webhook_event=WebhookEventPublic.model_validate(event))
