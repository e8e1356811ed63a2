"""Operators' view of dunning: who is in it, and a retry now."""

from typing import Annotated

from fastapi import Path

from app.core.auth import BillingAdmin
from app.core.db import SessionDep, SessionmakerDep
from app.core.deps import ClockDep
from app.core.errors import Forbidden, Unauthorized, error_responses
from app.core.routing import SlashTolerantRouter
from app.stripe_gateway.dependencies import StripeGatewayDep
from app.stripe_gateway.errors import StripeUnavailable
from app.subscriptions import dunning_operators
from app.subscriptions.errors import NotInDunning, PaymentRetryInProgress, SubscriptionNotFound
from app.subscriptions.schemas import DunningListResponse, DunningRetryResponse

router = SlashTolerantRouter(
    prefix="/admin/dunning",
    tags=["admin: dunning"],
    responses=error_responses(Unauthorized, Forbidden),
)

SubscriptionIdPath = Annotated[int, Path(ge=1, le=2**63 - 1)]


@router.get(
    "/",
    response_model=DunningListResponse,
    summary="Subscriptions in dunning: attempts, decline codes, next retry, grace end, state",
)
async def list_dunning(session: SessionDep, _: BillingAdmin) -> DunningListResponse:
    return DunningListResponse(dunning=await dunning_operators.list_dunning(session))


@router.post(
    "/{subscription_id}/retry/",
    response_model=DunningRetryResponse,
    responses=error_responses(
        SubscriptionNotFound, NotInDunning, PaymentRetryInProgress, StripeUnavailable
    ),
    summary="Retry the failed payment now (one attempt, its own idempotency key)",
)
async def retry_now(
    sessionmaker: SessionmakerDep,
    gateway: StripeGatewayDep,
    clock: ClockDep,
    _: BillingAdmin,
    subscription_id: SubscriptionIdPath,
) -> DunningRetryResponse:
    outcome, state = await dunning_operators.retry_now(
        sessionmaker=sessionmaker, gateway=gateway, clock=clock, subscription_id=subscription_id
    )
    return DunningRetryResponse(outcome=outcome, dunning=state)
