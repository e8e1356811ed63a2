"""Dunning's notices to the customer: each a notification (email and the dashboard's
webhook) and, beside the usage alerts in `GET alerts/`, a payment alert; both written once
per fact (the notification's key decides) in the transaction of the step that caused it."""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts import service as alerts_service
from app.notifications import service as notifications_service

# kind: (priority, action required, the alert's message)
_ALERTS: dict[str, tuple[str, bool, str]] = {
    "payment_failed": (
        "high",
        True,
        "A payment failed. Access continues during the grace period while we retry; "
        "update your card or pay the invoice to settle it.",
    ),
    "payment_retry_failed": (
        "high",
        True,
        "A retry of your overdue payment failed.",
    ),
    "payment_action_required": (
        "high",
        True,
        "Your bank asks you to confirm a payment: open the invoice to authenticate it.",
    ),
    "payment_recovered": ("low", False, "Your overdue payment is settled. Thank you."),
    "payment_overdue_suspended": (
        "high",
        True,
        "Access is suspended: the overdue invoice stayed unpaid after every retry.",
    ),
    "canceled_for_nonpayment": (
        "high",
        False,
        "Your subscription was canceled: the overdue invoice stayed unpaid.",
    ),
}


async def send_payment_notice(
    session: AsyncSession,
    *,
    customer_id: int,
    subscription_id: int | None,
    kind: str,
    dedupe_key: str,
    payload: dict[str, Any],
    now: datetime,
    sequence: int = 0,
) -> bool:
    """True when this call wrote the notice (False: already told)."""
    written = await notifications_service.notify(
        session,
        customer_id=customer_id,
        kind=kind,
        dedupe_key=dedupe_key,
        payload=payload,
        now=now,
    )
    if written and subscription_id is not None:
        priority, action_required, message = _ALERTS[kind]
        await alerts_service.raise_payment_alert(
            session,
            customer_id=customer_id,
            subscription_id=subscription_id,
            kind=kind,
            message=message,
            priority=priority,
            action_required=action_required,
            sequence=sequence,
            now=now,
        )
    return written
