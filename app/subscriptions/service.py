"""Reading the subscription, the manage actions' dispatch, and the change preview."""

from datetime import datetime

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings
from app.models import AddOn, Customer, Subscription, SubscriptionAddOn
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.fields import from_timestamp
from app.subscriptions import catalog, changes, repository
from app.subscriptions.errors import SubscriptionNotFound
from app.subscriptions.presentation import describe_subscription
from app.subscriptions.schemas import (
    ChangePreview,
    ManageRequest,
    PlanSummary,
    SubscribeRequest,
    SubscriptionPublic,
    SubscriptionResponse,
)
from app.subscriptions.subscribe import subscribe as subscribe_use_case


async def get_current_subscription(session: AsyncSession, customer: Customer) -> SubscriptionPublic:
    """The live subscription, else the latest ended one (so a canceled account sees it)."""
    subscription = await repository.get_live_for_customer(session, customer.id)
    if subscription is None or subscription.status == "pending":
        subscription = await repository.get_latest_for_customer(session, customer.id)
    if subscription is None:
        raise SubscriptionNotFound()
    return await describe_subscription(session, subscription)


async def describe_by_id(
    sessionmaker: async_sessionmaker[AsyncSession], subscription_id: int
) -> SubscriptionPublic:
    async with sessionmaker() as session:
        subscription = await repository.get(session, subscription_id)
        return await describe_subscription(session, subscription)


async def add_on_lines(
    session: AsyncSession, subscription_id: int
) -> list[tuple[SubscriptionAddOn, AddOn]]:
    """The subscription's add-on lines with the add-ons they hold."""
    return await catalog.add_on_lines(session, subscription_id)


async def lock_subscription(session: AsyncSession, subscription_id: int) -> Subscription:
    """The subscription, locked for the rest of the caller's transaction: what other domains
    take before they write what depends on its state (a usage period's close)."""
    return await repository.get_for_update(session, subscription_id)


async def get_subscription(session: AsyncSession, subscription_id: int) -> Subscription:
    """The subscription, unlocked: for a read that decides nothing the subscription's own
    writes could race (where an overage charge goes once it is billed)."""
    return await repository.get(session, subscription_id)


async def find_by_stripe_id(
    session: AsyncSession, stripe_subscription_id: str
) -> Subscription | None:
    """Our subscription of a Stripe subscription id, unlocked; None when we have none."""
    return await repository.get_by_stripe_id(session, stripe_subscription_id)


async def plan_in_force_at(
    session: AsyncSession, *, subscription: Subscription, moment: datetime
) -> int:
    """The id of the plan the subscription was billed by just before `moment`, from its plan
    history (a change scheduled for a renewal is not in force for the period it closes)."""
    return await repository.plan_in_force_at(session, subscription=subscription, moment=moment)


async def subscribe(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    customer: Customer,
    subscribe_request: SubscribeRequest,
    attempt: str,
) -> SubscriptionResponse:
    """Subscribe (see `app.subscriptions.subscribe`), answered with the subscription as it
    stands afterwards."""
    outcome = await subscribe_use_case(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        settings=settings,
        customer=customer,
        subscribe_request=subscribe_request,
        attempt=attempt,
    )
    return SubscriptionResponse(
        subscription=await describe_by_id(sessionmaker, outcome.subscription_id),
        requires_action=outcome.client_secret is not None,
        client_secret=outcome.client_secret,
        client_secret_type=outcome.client_secret_type,
    )


async def manage(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    redis: ArqRedis,
    clock: Clock,
    customer: Customer,
    manage_request: ManageRequest,
    attempt: str,
) -> SubscriptionResponse:
    """One manage action, answered with the subscription as it stands afterwards."""
    outcome = await _apply_action(
        sessionmaker=sessionmaker,
        gateway=gateway,
        redis=redis,
        clock=clock,
        customer=customer,
        manage_request=manage_request,
        attempt=attempt,
    )
    return SubscriptionResponse(
        subscription=await describe_by_id(sessionmaker, outcome.subscription_id),
        requires_action=outcome.client_secret is not None,
        client_secret=outcome.client_secret,
        client_secret_type="payment_intent" if outcome.client_secret else None,
    )


async def _apply_action(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    redis: ArqRedis,
    clock: Clock,
    customer: Customer,
    manage_request: ManageRequest,
    attempt: str,
) -> changes.ChangeOutcome:
    action = manage_request.action
    if action in ("upgrade", "downgrade", "change_plan"):
        return await changes.change_plan(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            customer=customer,
            manage_request=manage_request,
            attempt=attempt,
        )
    if action == "cancel_pending_change":
        return await changes.cancel_pending_change(
            sessionmaker=sessionmaker, gateway=gateway, customer=customer
        )
    if action == "cancel":
        return await changes.cancel(
            sessionmaker=sessionmaker,
            gateway=gateway,
            redis=redis,
            customer=customer,
            at_period_end=manage_request.at_period_end,
            attempt=attempt,
        )
    if action == "reactivate":
        return await changes.reactivate(
            sessionmaker=sessionmaker, gateway=gateway, customer=customer, attempt=attempt
        )
    return await changes.set_add_on(
        sessionmaker=sessionmaker,
        gateway=gateway,
        customer=customer,
        manage_request=manage_request,
        attempt=attempt,
    )


async def preview_change(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    customer: Customer,
    plan_reference: int | str | None,
    billing_cycle: str | None,
) -> ChangePreview:
    """What a plan or cycle change costs now and what the next invoice will be, from Stripe's
    invoice preview. `proration_date` is the moment priced: send it back with the change."""
    async with sessionmaker() as session:
        change = await changes.resolve_plan_change(session, customer, plan_reference, billing_cycle)
        subscription, target_plan = change.subscription, change.target_plan
        target_cycle, timing = change.target_cycle, change.timing
        target_price = catalog.price_id(target_plan, target_cycle)
    assert subscription.stripe_subscription_id is not None
    now = int(clock.now().timestamp())
    period_end = subscription.current_period_end
    # A change at the period end costs nothing now: price it at that moment.
    proration_date = now if timing == "now" or period_end is None else int(period_end.timestamp())
    preview = await gateway.preview_change(
        customer_id=customer.stripe_customer_id or "",
        subscription_id=subscription.stripe_subscription_id,
        items=[{"id": subscription.stripe_plan_item_id, "price": target_price}],
        proration_date=proration_date,
    )
    effective_at: datetime | None = from_timestamp(proration_date)
    if timing == "period_end":
        amount_due_now, next_invoice_amount = 0, preview.total
    elif target_cycle != subscription.billing_cycle:
        # A new cycle restarts the billing period: the whole invoice is due now.
        amount_due_now = preview.total
        next_invoice_amount = preview.total - preview.proration_amount
    else:
        amount_due_now = max(preview.proration_amount, 0)
        next_invoice_amount = preview.total - preview.proration_amount
    return ChangePreview(
        plan=PlanSummary(id=target_plan.id, slug=target_plan.slug, name=target_plan.name),
        billing_cycle=target_cycle,
        takes_effect=timing,
        effective_at=effective_at,
        currency=preview.currency,
        amount_due_now=amount_due_now,
        next_invoice_amount=next_invoice_amount,
        next_invoice_date=preview.next_payment_attempt or preview.period_end,
        proration_date=proration_date,
    )
