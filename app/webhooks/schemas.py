from datetime import datetime

from pydantic import BaseModel, ConfigDict

from app.core.schemas import SuccessResponse


class WebhookAcknowledgement(BaseModel):
    received: bool = True
    duplicate: bool


class WebhookEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    stripe_event_id: str
    type: str
    status: str
    attempts: int
    last_error: str | None
    object_id: str | None
    api_version: str | None
    stripe_created_at: datetime
    received_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None


class WebhookEventStats(BaseModel):
    by_status: dict[str, int]
    # Seconds the oldest unprocessed event has waited: the processing lag.
    oldest_pending_age_seconds: float | None


class WebhookEventListResponse(SuccessResponse):
    webhook_events: list[WebhookEventPublic]
    stats: WebhookEventStats


class WebhookEventResponse(SuccessResponse):
    webhook_event: WebhookEventPublic
