from typing import Annotated

from fastapi import Path, Query

from app.alerts import service
from app.alerts.errors import AlertNotFound, InvalidAlertCursor
from app.alerts.schemas import AlertListResponse, AlertPublic, AlertResponse
from app.core.accounts import CustomerNotFound, TargetAccount
from app.core.db import SessionDep
from app.core.deps import ClockDep
from app.core.errors import Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter

router = SlashTolerantRouter(
    tags=["alerts"], responses=error_responses(Unauthorized, CustomerNotFound)
)


@router.get(
    "/alerts/",
    response_model=AlertListResponse,
    responses=error_responses(InvalidAlertCursor),
    summary="The caller's usage and payment alerts, newest first",
)
async def list_alerts(
    account: TargetAccount,
    session: SessionDep,
    acknowledged: Annotated[
        bool | None, Query(description="Only acknowledged (true) or open (false) alerts.")
    ] = None,
    cursor: Annotated[
        str | None, Query(max_length=40, description="`next_cursor` of the previous page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> AlertListResponse:
    page = await service.list_alerts(
        session, account=account, acknowledged=acknowledged, cursor=cursor, limit=limit
    )
    return AlertListResponse(
        alerts=[AlertPublic.from_alert(alert) for alert in page.alerts],
        next_cursor=page.next_cursor,
    )


@router.post(
    "/alerts/{alert_id}/acknowledge/",
    response_model=AlertResponse,
    responses=error_responses(AlertNotFound),
    summary="Acknowledge an alert",
)
async def acknowledge_alert(
    alert_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
    account: TargetAccount,
    session: SessionDep,
    clock: ClockDep,
) -> AlertResponse:
    alert = await service.acknowledge_alert(
        session, account=account, alert_id=alert_id, now=clock.now()
    )
    return AlertResponse(alert=AlertPublic.from_alert(alert))
