from fastapi import Response, status

from app.core.accounts import TargetAccount
from app.core.auth import CurrentPrincipal
from app.core.db import DriverReadsDep, DriverTransactionDep, ReadSessionDep
from app.core.deps import ClockDep, SettingsDep
from app.core.errors import Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.subscriptions.errors import SubscriptionNotFound
from app.usage import entitlements, ingestion, summary
from app.usage.errors import (
    CallTooLong,
    CustomerNotFound,
    NoActiveSubscription,
    UsageConflict,
    UsageInFuture,
    UsageTooLate,
)
from app.usage.schemas import (
    EntitlementsResponse,
    UsageBatchRequest,
    UsageBatchResponse,
    UsageRecordCreate,
    UsageRecordResponse,
    UsageSummaryResponse,
)

router = SlashTolerantRouter(
    tags=["usage"], responses=error_responses(Unauthorized, CustomerNotFound)
)


@router.post(
    "/usage/",
    response_model=UsageRecordResponse,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "A duplicate, or a user's record replaced by the service's."},
        **error_responses(
            NoActiveSubscription, UsageConflict, UsageTooLate, UsageInFuture, CallTooLong
        ),
    },
    summary="Record a call's minutes or a reading of active agents",
)
async def record_usage(
    record: UsageRecordCreate,
    principal: CurrentPrincipal,
    session: DriverTransactionDep,
    clock: ClockDep,
    settings: SettingsDep,
    response: Response,
) -> UsageRecordResponse:
    """201 for a new record; 200 with `duplicate: true` for the same record again (counted
    once), or with `replaced: true` when the telephony backend's record replaced one a user
    token sent first. The same `call_id` with different fields is a 409 `usage_conflict`."""
    outcome = await ingestion.record_usage(
        session,
        principal=principal,
        record=record,
        now=clock.now(),
        alert_thresholds=settings.USAGE_ALERT_THRESHOLDS,
    )
    assert outcome.record is not None
    if outcome.status == "duplicate" or outcome.replaced:
        response.status_code = status.HTTP_200_OK
    return UsageRecordResponse(
        duplicate=outcome.status == "duplicate",
        replaced=outcome.replaced,
        usage_record=outcome.record,
    )


@router.post(
    "/usage/batch/",
    response_model=UsageBatchResponse,
    summary="Record up to 1,000 usage records, each answered on its own",
)
async def record_usage_batch(
    batch: UsageBatchRequest,
    principal: CurrentPrincipal,
    session: DriverTransactionDep,
    clock: ClockDep,
    settings: SettingsDep,
) -> UsageBatchResponse:
    """Each record is answered in order: `created`, `duplicate`, `conflict` (where POST
    usage/ would be a 409: `usage_conflict`, `no_active_subscription`) or `invalid` (with
    the error's code); a rejected record never rejects the others."""
    outcomes = await ingestion.record_usage_batch(
        session,
        principal=principal,
        records=batch.records,
        now=clock.now(),
        alert_thresholds=settings.USAGE_ALERT_THRESHOLDS,
    )
    # Plain values, validated in one pass of pydantic's core (building a thousand models
    # here, one Python call each, cost ten times as much).
    results = [
        {
            "index": index,
            "status": outcome.status,
            "call_id": outcome.call_id,
            "record_id": outcome.record_id,
            "replaced": outcome.replaced,
            "error": (
                {
                    "code": outcome.error.code,
                    "message": outcome.error.detail_message,
                    "details": outcome.error.details,
                }
                if outcome.error
                else None
            ),
        }
        for index, outcome in enumerate(outcomes)
    ]
    counts = dict.fromkeys(("created", "duplicate", "conflict", "invalid"), 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    return UsageBatchResponse.model_validate({"results": results, "counts": counts})


@router.get(
    "/usage/",
    response_model=UsageSummaryResponse,
    responses=error_responses(SubscriptionNotFound),
    summary="The current usage period: minutes, agents, overage, daily series",
)
async def get_usage_summary(
    account: TargetAccount, session: ReadSessionDep, clock: ClockDep
) -> UsageSummaryResponse:
    return UsageSummaryResponse(
        usage=await summary.usage_summary(session, account=account, now=clock.now())
    )


@router.get(
    "/entitlements/",
    response_model=EntitlementsResponse,
    summary="What the customer may use now, and whether the next call is allowed",
)
async def get_entitlements(
    account: TargetAccount, session: DriverReadsDep, clock: ClockDep
) -> EntitlementsResponse:
    return EntitlementsResponse(
        entitlements=await entitlements.get_entitlements(session, account=account, now=clock.now())
    )
