"""Dunning for operators: who is in it (`admin/dunning/`, `billing dunning`), and a retry
now under the same rules as the scheduled ones."""

from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.customers import service as customers_service
from app.models import PaymentRetry, Subscription
from app.models.subscription import ENDED_STATUSES
from app.stripe_gateway.client import StripeGateway
from app.subscriptions import repository
from app.subscriptions.dunning import request_retry
from app.subscriptions.errors import PaymentRetryInProgress, SubscriptionNotFound
from app.subscriptions.payment_retries import run_retry
from app.subscriptions.schemas import DunningPublic, PaymentRetryPublic

DunningState = Literal["retrying", "action_required", "suspended", "ended"]


def _state_of(subscription: Subscription) -> DunningState:
    if subscription.status in ENDED_STATUSES:
        return "ended"
    if subscription.payment_overdue_at is not None:
        return "suspended"
    if subscription.dunning_action_required:
        return "action_required"
    return "retrying"


async def _describe(
    session: AsyncSession, subscription: Subscription, retries: list[PaymentRetry]
) -> DunningPublic:
    assert subscription.dunning_invoice_id is not None
    customer = await customers_service.get(session, subscription.customer_id)
    return DunningPublic(
        subscription_id=subscription.id,
        customer_id=customer.dashboard_user_id if customer else str(subscription.customer_id),
        status=subscription.status,
        state=_state_of(subscription),
        invoice=subscription.dunning_invoice_id,
        failed_payment_attempts=subscription.failed_payment_attempts,
        last_decline_code=subscription.last_decline_code,
        decline_codes=[retry.decline_code for retry in retries if retry.decline_code],
        next_payment_retry=subscription.next_payment_retry_at,
        grace_period_end=subscription.grace_period_ends_at,
        payment_overdue_since=subscription.payment_overdue_at,
        retries=[
            PaymentRetryPublic.model_validate(retry, from_attributes=True) for retry in retries
        ],
    )


async def list_dunning(session: AsyncSession) -> list[DunningPublic]:
    """Every subscription in dunning, with its attempts (`admin/dunning/`, `billing dunning`)."""
    subscriptions = list(await repository.list_in_dunning(session))
    retries = await repository.list_payment_retries(session, [s.id for s in subscriptions])
    return [
        await _describe(
            session,
            subscription,
            [
                retry
                for retry in retries
                if retry.subscription_id == subscription.id
                and retry.stripe_invoice_id == subscription.dunning_invoice_id
            ],
        )
        for subscription in subscriptions
    ]


async def retry_now(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    subscription_id: int,
) -> tuple[str, DunningPublic | None]:
    """An operator's retry, run at once under the same rules (a key per attempt); returns
    its outcome and the dunning afterwards."""
    async with sessionmaker.begin() as session:
        subscription = await repository.find_for_update(session, subscription_id)
        if subscription is None:
            raise SubscriptionNotFound()
        retry_id = await request_retry(
            session, subscription=subscription, trigger="operator", now=clock.now()
        )
    outcome = await run_retry(
        sessionmaker=sessionmaker, gateway=gateway, clock=clock, retry_id=retry_id
    )
    if outcome == "busy":
        raise PaymentRetryInProgress()
    async with sessionmaker() as session:
        subscription = await repository.get(session, subscription_id)
        if subscription.dunning_invoice_id is None:
            return outcome, None
        retries = await repository.list_payment_retries(session, [subscription_id])
        return outcome, await _describe(
            session,
            subscription,
            [r for r in retries if r.stripe_invoice_id == subscription.dunning_invoice_id],
        )
