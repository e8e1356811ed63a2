from datetime import datetime

from pydantic import Field

from app.core.schemas import Schema, SuccessResponse
from app.models import UsageAlert


class AlertPublic(Schema):
    id: int
    kind: str = Field(
        description="usage_threshold, overage, usage_anomaly; payment alerts: payment_failed, "
        "payment_retry_failed, payment_action_required, payment_recovered, "
        "payment_overdue_suspended, canceled_for_nonpayment."
    )
    resource: str = Field(description="minutes or agents; empty when about no one resource.")
    threshold: int = Field(description="Percent of the allowance, for usage_threshold.")
    priority: str
    action_required: bool
    message: str
    subscription_id: int
    period_start: datetime
    created_at: datetime
    acknowledged: bool
    acknowledged_at: datetime | None

    @classmethod
    def from_alert(cls, alert: UsageAlert) -> "AlertPublic":
        return cls.model_validate(
            {
                **{column.key: getattr(alert, column.key) for column in alert.__table__.columns},
                "acknowledged": alert.acknowledged_at is not None,
            }
        )


class AlertListResponse(SuccessResponse):
    alerts: list[AlertPublic]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next (older) page; null on the last page."
    )


class AlertResponse(SuccessResponse):
    alert: AlertPublic
