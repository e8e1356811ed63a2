from datetime import datetime
from typing import Any, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.operator_alerts import repository
from app.operator_alerts.errors import OperatorAlertNotFound

logger = structlog.get_logger(__name__)

Severity = Literal["low", "medium", "high"]


async def raise_alert(
    session: AsyncSession,
    *,
    kind: str,
    message: str,
    dedupe_key: str,
    now: datetime,
    severity: Severity = "high",
    details: dict[str, Any] | None = None,
) -> bool:
    """Raise an operator alert in the caller's transaction, once per `dedupe_key`: the same
    fact reported again (a redelivered webhook, the next sweep) adds nothing. True when this
    call raised it."""
    raised = await repository.insert_alert_if_new(
        session,
        kind=kind,
        severity=severity,
        message=message,
        details=details or {},
        dedupe_key=dedupe_key,
        created_at=now,
    )
    if raised:
        logger.warning("operator_alert_raised", kind=kind, dedupe_key=dedupe_key)
    return raised


async def acknowledge_alert(session: AsyncSession, *, alert_id: int, now: datetime) -> bool:
    """Mark an alert as seen; acknowledging it again changes nothing. True when this call
    acknowledged it."""
    acknowledged = await repository.acknowledge(session, alert_id=alert_id, at=now)
    if acknowledged is None:
        raise OperatorAlertNotFound()
    return acknowledged
