from datetime import datetime
from typing import Any, Literal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.operator_alerts import repository

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
