"""Operators' view of the outbox: notifications by status, kind and customer, and a resend
of a dead one."""

from typing import Annotated, Literal

from fastapi import Path, Query

from app.core.auth import BillingAdmin
from app.core.db import SessionDep
from app.core.deps import ClockDep
from app.core.errors import Forbidden, Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.notifications import service
from app.notifications.errors import NotificationNotDead, NotificationNotFound
from app.notifications.schemas import (
    NotificationListResponse,
    NotificationPublic,
    NotificationResponse,
)

router = SlashTolerantRouter(
    prefix="/admin/notifications",
    tags=["admin: notifications"],
    responses=error_responses(Unauthorized, Forbidden),
)

DatabaseId = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get(
    "/",
    response_model=NotificationListResponse,
    summary="Notifications with each channel's delivery state, newest first",
)
async def list_notifications(
    session: SessionDep,
    _: BillingAdmin,
    status: Annotated[Literal["pending", "sent", "dead"] | None, Query()] = None,
    type: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[a-z0-9_]+$", description="`payment_failed`, ..."),
    ] = None,
    customer: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="The customer's id.")
    ] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**63 - 1)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> NotificationListResponse:
    items = await service.list_notifications(
        session, status=status, kind=type, customer_id=customer, limit=limit + 1, before_id=cursor
    )
    page = items[:limit]
    return NotificationListResponse(
        notifications=[NotificationPublic.of(item) for item in page],
        next_cursor=str(page[-1].notification.id) if len(items) > limit else None,
    )


@router.post(
    "/{notification_id}/resend/",
    response_model=NotificationResponse,
    responses=error_responses(NotificationNotFound, NotificationNotDead),
    summary="Deliver a dead notification again (same event id; sent channels not repeated)",
)
async def resend_notification(
    session: SessionDep, clock: ClockDep, _: BillingAdmin, notification_id: DatabaseId
) -> NotificationResponse:
    resent = await service.resend_notification(
        session, notification_id=notification_id, now=clock.now()
    )
    return NotificationResponse(notification=NotificationPublic.of(resent))
