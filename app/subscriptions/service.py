"""Reading the subscription, the manage actions' dispatch, and the change preview."""

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from arq.connections import ArqRedis
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings
from app.models import AddOn, Customer, Subscription, SubscriptionAddOn, SubscriptionAddOnChange
from app.plans import service as plans_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.fields import from_timestamp
from app.stripe_gateway.types import ScheduleState, SubscriptionState
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
from app.subscriptions.stripe_state import apply_stripe_state
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


async def add_on_history(
    session: AsyncSession, subscription_id: int
) -> tuple[dict[int, int], Sequence[SubscriptionAddOnChange], dict[int, AddOn]]:
    """What a usage period's close needs to price add-ons by the time they were held: the
    quantities held now (by add-on id), the quantity changes (oldest first), and every add-on
    either names."""
    lines = await repository.list_add_on_lines(session, subscription_id)
    changes = await repository.add_on_changes(session, subscription_id)
    ids = {line.add_on_id for line in lines} | {change.add_on_id for change in changes}
    add_ons = await plans_service.add_ons_by_ids(session, ids) if ids else {}
    return {line.add_on_id: line.quantity for line in lines}, changes, add_ons


async def lock_subscription(session: AsyncSession, subscription_id: int) -> Subscription:
    """The subscription, locked for the rest of the caller's transaction: what other domains
    take before they write what depends on its state (a usage period's close)."""
    return await repository.get_for_update(session, subscription_id)


async def _answer(
    sessionmaker: async_sessionmaker[AsyncSession],
    subscription_id: int,
    client_secret: str | None,
    client_secret_type: Literal["payment_intent", "setup_intent"] | None,
) -> SubscriptionResponse:
    """The subscription as it stands after a write, with the secret to confirm, if any."""
    return SubscriptionResponse(
        subscription=await describe_by_id(sessionmaker, subscription_id),
        requires_action=client_secret is not None,
        client_secret=client_secret,
        client_secret_type=client_secret_type,
    )


async def get_subscription(session: AsyncSession, subscription_id: int) -> Subscription:
    """The subscription, unlocked: for a read that decides nothing the subscription's own
    writes could race (where an overage charge goes once it is billed)."""
    return await repository.get(session, subscription_id)


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
    return await _answer(
        sessionmaker, outcome.subscription_id, outcome.client_secret, outcome.client_secret_type
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
    # A change's secret is always its invoice's payment intent.
    secret_type: Literal["payment_intent"] | None = (
        "payment_intent" if outcome.client_secret else None
    )
    return await _answer(sessionmaker, outcome.subscription_id, outcome.client_secret, secret_type)


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
            sessionmaker=sessionmaker, gateway=gateway, clock=clock, customer=customer
        )
    if action == "cancel":
        return await changes.cancel(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            redis=redis,
            customer=customer,
            at_period_end=manage_request.at_period_end,
            attempt=attempt,
        )
    if action == "reactivate":
        return await changes.reactivate(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            customer=customer,
            attempt=attempt,
        )
    return await changes.set_add_on(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
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


# What Stripe's events change (called by the webhook handlers, in their transaction).


async def find_by_stripe_id(
    session: AsyncSession, stripe_subscription_id: str | None, *, lock: bool
) -> Subscription | None:
    """Our subscription behind a Stripe subscription; `lock` when the caller writes what
    depends on its state."""
    if not stripe_subscription_id:
        return None
    return await repository.get_by_stripe_id(session, stripe_subscription_id, for_update=lock)


async def find_for_stripe_state(
    session: AsyncSession, state: SubscriptionState, *, lock: bool = True
) -> Subscription | None:
    """Ours by Stripe id, else the reservation a subscribe made before it learned the id (a
    subscribe whose answer we never recorded: the reservation's id is in the metadata)."""
    subscription = await repository.get_by_stripe_id(session, state.id, for_update=lock)
    if subscription is not None:
        return subscription
    reservation = state.metadata.get("billing_subscription_id")
    if reservation and reservation.isdigit():
        return await repository.get_unconfirmed_reservation(
            session, int(reservation), for_update=lock
        )
    return None


async def apply_state(
    session: AsyncSession,
    subscription: Subscription,
    state: SubscriptionState,
    *,
    observed_at: datetime | None,
    now: datetime,
) -> None:
    """Copy Stripe's state of the subscription onto ours (see `stripe_state`), with the
    customer's notices the change calls for."""
    await apply_stripe_state(session, subscription, state, now=now, observed_at=observed_at)


async def apply_schedule(
    session: AsyncSession, subscription: Subscription, schedule: ScheduleState
) -> None:
    """The pending plan change of manage/: phase two of an active schedule, or none."""
    if schedule.status not in ("active", "not_started") or len(schedule.phase_bounds) < 2:
        subscription.pending_plan_id = None
        subscription.pending_billing_cycle = None
        subscription.pending_change_at = None
        subscription.stripe_schedule_id = None
        return
    plans = await plans_service.plans_by_price_ids(session, set(schedule.next_phase_price_ids))
    if not plans:
        return
    plan, cycle = next(iter(plans.values()))
    subscription.stripe_schedule_id = schedule.id
    subscription.pending_plan_id = plan.id
    subscription.pending_billing_cycle = cycle
    subscription.pending_change_at = schedule.current_phase_end


def record_failed_payment_attempts(subscription: Subscription, attempts: int) -> None:
    """Stripe's count of attempts at the open invoice, so a redelivery cannot count twice."""
    subscription.failed_payment_attempts = max(subscription.failed_payment_attempts, attempts)


async def list_linked_to_stripe(session: AsyncSession) -> Sequence[Subscription]:
    """The subscriptions to compare with Stripe's (reconcile)."""
    return await repository.list_linked_to_stripe(session)


async def find_live_for_customer(
    session: AsyncSession, customer_id: int, *, lock: bool
) -> Subscription | None:
    return await repository.get_live_for_customer(session, customer_id, for_update=lock)


async def adopt_stripe_subscription(
    session: AsyncSession,
    *,
    customer_id: int,
    plan_id: int,
    billing_cycle: str,
    state: SubscriptionState,
    now: datetime,
) -> Subscription | None:
    """Take over a subscription that exists only on Stripe (the old module's); None when the
    account got a live subscription meanwhile (the one-live-subscription index decides)."""
    subscription = Subscription(
        customer_id=customer_id,
        plan_id=plan_id,
        billing_cycle=billing_cycle,
        status=state.status,
        stripe_subscription_id=state.id,
    )
    try:
        # A savepoint: a subscribe racing the import is reported, not fatal.
        async with session.begin_nested():
            await repository.insert(session, subscription)
    except IntegrityError:
        return None
    await apply_stripe_state(session, subscription, state, now=now)
    return subscription
