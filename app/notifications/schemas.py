from datetime import datetime
from typing import Any

from pydantic import Field

from app.core.schemas import Schema, SuccessResponse
from app.notifications.delivery import event_id
from app.notifications.service import NotificationWithDeliveries


class NotificationDeliveryPublic(Schema):
    channel: str = Field(description="email or dashboard")
    status: str = Field(description="pending, sent, skipped (not configured) or dead")
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_error: str | None
    last_response: str | None = Field(description="What the receiver answered last.")
    sent_at: datetime | None


class NotificationPublic(Schema):
    id: int
    event_id: str = Field(description="The id the dashboard event carries, on every retry.")
    customer_id: int
    kind: str
    status: str = Field(description="pending, sent or dead")
    attempts: int
    payload: dict[str, Any]
    created_at: datetime
    sent_at: datetime | None
    deliveries: list[NotificationDeliveryPublic]

    @classmethod
    def of(cls, item: NotificationWithDeliveries) -> "NotificationPublic":
        notification = item.notification
        return cls(
            id=notification.id,
            event_id=event_id(notification.id),
            customer_id=notification.customer_id,
            kind=notification.kind,
            status=notification.status,
            attempts=notification.attempts,
            payload=notification.payload,
            created_at=notification.created_at,
            sent_at=notification.sent_at,
            deliveries=[NotificationDeliveryPublic.model_validate(d) for d in item.deliveries],
        )


class NotificationListResponse(SuccessResponse):
    notifications: list[NotificationPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class NotificationResponse(SuccessResponse):
    notification: NotificationPublic
