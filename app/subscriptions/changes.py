"""The seed's `POST manage/` actions on a live subscription.

Timing rule for plan and cycle changes (`change_timing`): the cycle decides first (to a longer
cycle now, to a shorter one at the period end), then the price within one cycle (a dearer plan
now, a cheaper one at the period end). "Now" is charged at once with prorations and granted
only if that charge succeeds; "period end" is a Stripe subscription schedule whose second phase
starts when the paid period ends.

Idempotency keys name the subscription, the change (from what to what) and the attempt
(`app.core.deps.get_attempt_token`): a client retry with its Idempotency-Key repeats the same
Stripe call, while a deliberate new attempt (cancel, reactivate, cancel again; a retry after a
decline with a new card) is a new call instead of a replay of the first answer. Each of these
changes is safe to send twice: the second finds the state already changed.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.errors import AppError, InvalidRequest
from app.jobs.enqueue import BILL_ENDED_SUBSCRIPTION_USAGE, enqueue_job
from app.models import Customer, Subscription, SubscriptionPlan
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.errors import PaymentDeclined
from app.stripe_gateway.types import SubscriptionState
from app.subscriptions import catalog, repository
from app.subscriptions.errors import ActionNotAllowed, SubscriptionNotFound
from app.subscriptions.schemas import ManageRequest
from app.subscriptions.stripe_state import apply_stripe_state

ChangeTiming = Literal["now", "period_end"]
CHANGEABLE_STATUSES = {"trialing", "active", "past_due"}


@dataclass(frozen=True, slots=True)
class ChangeOutcome:
    subscription_id: int
    client_secret: str | None = None


def change_timing(
    current_plan: SubscriptionPlan,
    current_cycle: str,
    target_plan: SubscriptionPlan,
    target_cycle: str,
) -> ChangeTiming:
    if catalog.CYCLE_MONTHS[target_cycle] != catalog.CYCLE_MONTHS[current_cycle]:
        longer = catalog.CYCLE_MONTHS[target_cycle] > catalog.CYCLE_MONTHS[current_cycle]
        return "now" if longer else "period_end"
    current_price = catalog.price_amount(current_plan, current_cycle)
    target_price = catalog.price_amount(target_plan, target_cycle)
    return "period_end" if target_price < current_price else "now"


# How far back a previewed proration date may be sent with the change.
PRORATION_DATE_TOLERANCE = timedelta(hours=1)


async def load_changeable(session: AsyncSession, customer: Customer) -> Subscription:
    subscription = await repository.get_live_for_customer(session, customer.id)
    if subscription is None:
        latest = await repository.get_latest_for_customer(session, customer.id)
        if latest is not None and latest.status == "canceled":
            raise ActionNotAllowed("already_canceled", "The subscription is canceled.")
        raise SubscriptionNotFound()
    if (
        subscription.status not in CHANGEABLE_STATUSES
        or subscription.stripe_subscription_id is None
    ):
        raise ActionNotAllowed(
            "subscription_not_active",
            f"The subscription is {subscription.status}; complete its payment first.",
        )
    return subscription


async def _record(
    sessionmaker: async_sessionmaker[AsyncSession],
    subscription_id: int,
    state: SubscriptionState,
    *,
    now: datetime,
    pending: tuple[int, str] | None = None,
    observed_at: datetime | None = None,
) -> None:
    async with sessionmaker.begin() as session:
        subscription = await repository.get_for_update(session, subscription_id)
        await apply_stripe_state(session, subscription, state, now=now, observed_at=observed_at)
        if pending is not None and state.schedule_id is not None:
            subscription.pending_plan_id, subscription.pending_billing_cycle = pending
            subscription.pending_change_at = subscription.current_period_end


def _checked_proration_date(
    proration_date: int | None, subscription: Subscription, now: datetime
) -> int:
    """The previewed moment the change is priced at: within the current period, not ahead."""
    if proration_date is None:
        return int(now.timestamp())
    earliest = subscription.current_period_start or now
    if not (
        (earliest - PRORATION_DATE_TOLERANCE).timestamp()
        <= proration_date
        <= (now + PRORATION_DATE_TOLERANCE).timestamp()
    ):
        raise InvalidRequest(
            "proration_date must be a recent preview's, within the current period.",
            details={"field": "proration_date"},
        )
    return max(proration_date, int(earliest.timestamp()))


async def _refresh(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    subscription: Subscription,
    now: datetime,
) -> None:
    assert subscription.stripe_subscription_id is not None
    state = await gateway.retrieve_subscription(subscription.stripe_subscription_id)
    await _record(sessionmaker, subscription.id, state, now=now)


async def _charge_outcome(
    gateway: StripeGateway, subscription_id: int, state: SubscriptionState
) -> ChangeOutcome:
    """After a change made with `pending_if_incomplete`: Stripe keeps it in `pending_update`
    until its invoice is paid. Needs SCA: the client secret; declined: 402, nothing granted."""
    if not state.has_pending_update:
        return ChangeOutcome(subscription_id)
    outcome = (
        await gateway.latest_payment_outcome(invoice_id=state.latest_invoice_id)
        if state.latest_invoice_id
        else None
    )
    if outcome is not None and outcome.payment_intent_status == "requires_action":
        return ChangeOutcome(subscription_id, state.invoice_client_secret)
    raise PaymentDeclined(details={"decline_code": outcome.decline_code if outcome else None})


async def _release_schedule(gateway: StripeGateway, subscription: Subscription) -> None:
    if subscription.stripe_schedule_id:
        await gateway.release_schedule(
            schedule_id=subscription.stripe_schedule_id,
            idempotency_key=f"release:{subscription.stripe_schedule_id}",
        )


async def _add_on_items(
    session: AsyncSession, subscription: Subscription, cycle: str
) -> list[tuple[str, int]]:
    return [
        (catalog.price_id(add_on, cycle), line.quantity)
        for line, add_on in await catalog.add_on_lines(session, subscription.id)
    ]


async def _add_on_items_moved(
    session: AsyncSession, subscription: Subscription, cycle: str
) -> list[dict[str, str]]:
    """The add-on items repriced for `cycle` when the cycle changes now: Stripe refuses a
    subscription whose items bill on different intervals, and an add-on left on its monthly
    price beside a yearly plan would be billed on the wrong cycle. Same cycle: untouched."""
    if cycle == subscription.billing_cycle:
        return []
    return [
        {"id": line.stripe_subscription_item_id, "price": catalog.price_id(add_on, cycle)}
        for line, add_on in await catalog.add_on_lines(session, subscription.id)
        if line.stripe_subscription_item_id is not None
    ]


@dataclass(frozen=True, slots=True)
class PlanChange:
    subscription: Subscription
    current_plan: SubscriptionPlan
    target_plan: SubscriptionPlan
    target_cycle: str
    timing: ChangeTiming


async def resolve_plan_change(
    session: AsyncSession,
    customer: Customer,
    plan_reference: int | str | None,
    billing_cycle: str | None,
) -> PlanChange:
    """The live subscription and the plan and cycle it would move to (for a change and for
    its preview alike); 409 when that is where it is already."""
    subscription = await load_changeable(session, customer)
    current_plan = (await catalog.plans_by_ids(session, {subscription.plan_id}))[
        subscription.plan_id
    ]
    target_plan = (
        await catalog.resolve_plan(session, plan_reference)
        if plan_reference is not None
        else current_plan
    )
    target_cycle = billing_cycle or subscription.billing_cycle
    if target_plan.id == current_plan.id and target_cycle == subscription.billing_cycle:
        raise ActionNotAllowed("already_on_plan", "The subscription is on this plan already.")
    timing = change_timing(current_plan, subscription.billing_cycle, target_plan, target_cycle)
    return PlanChange(subscription, current_plan, target_plan, target_cycle, timing)


async def change_plan(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    customer: Customer,
    manage_request: ManageRequest,
    attempt: str,
) -> ChangeOutcome:
    if manage_request.plan_id is None and manage_request.billing_cycle is None:
        raise ActionNotAllowed(
            "plan_id_required", "Name the plan_id (or billing_cycle) to move to."
        )
    async with sessionmaker() as session:
        change = await resolve_plan_change(
            session, customer, manage_request.plan_id, manage_request.billing_cycle
        )
        subscription, target_plan = change.subscription, change.target_plan
        target_cycle, timing = change.target_cycle, change.timing
        if manage_request.action == "upgrade" and timing != "now":
            raise ActionNotAllowed(
                "not_an_upgrade", "That change is a downgrade; it applies at the period end."
            )
        if manage_request.action == "downgrade" and timing != "period_end":
            raise ActionNotAllowed("not_a_downgrade", "That change is an upgrade; it applies now.")
        target_price = catalog.price_id(target_plan, target_cycle)
        add_on_items_next = await _add_on_items(session, subscription, target_cycle)
        add_on_items_now = await _add_on_items_moved(session, subscription, target_cycle)
    assert subscription.stripe_subscription_id is not None

    if timing == "now":
        proration_date = _checked_proration_date(
            manage_request.proration_date, subscription, clock.now()
        )
        # An upgrade replaces a pending downgrade: release the schedule first (Stripe does
        # not let a scheduled subscription's items be changed directly).
        await _release_schedule(gateway, subscription)
        try:
            state = await gateway.update_subscription(
                subscription_id=subscription.stripe_subscription_id,
                params={
                    "items": [
                        {"id": subscription.stripe_plan_item_id, "price": target_price},
                        *add_on_items_now,
                    ],
                    # Invoice the difference now, and grant the change only if it is paid.
                    "proration_behavior": "always_invoice",
                    "payment_behavior": "pending_if_incomplete",
                    "proration_date": proration_date,
                },
                idempotency_key=(
                    f"change:{subscription.id}:{target_price}:{proration_date}:{attempt}"
                ),
            )
        except AppError:
            if subscription.stripe_schedule_id:
                # The schedule is gone on Stripe even though the change failed: show that.
                await _refresh(sessionmaker, gateway, subscription, clock.now())
            raise
        await _record(
            sessionmaker, subscription.id, state, now=clock.now(), observed_at=clock.now()
        )
        return await _charge_outcome(gateway, subscription.id, state)

    if subscription.current_period_start is None or subscription.current_period_end is None:
        raise ActionNotAllowed("period_unknown", "The subscription's period is not known yet.")
    if subscription.stripe_schedule_id is None:
        schedule = await gateway.create_schedule_from_subscription(
            subscription_id=subscription.stripe_subscription_id,
            idempotency_key=f"schedule:{subscription.id}:{attempt}",
        )
    else:
        schedule = await gateway.retrieve_schedule(subscription.stripe_schedule_id)
    await gateway.schedule_change_at_period_end(
        schedule_id=schedule.id,
        current_phase_start=schedule.phase_bounds[0][0],
        period_end=int(subscription.current_period_end.timestamp()),
        # The current phase keeps exactly what Stripe bills now (even a price since
        # replaced in the catalog), so the paid period is not repriced.
        current_items=list(schedule.current_phase_items),
        next_items=[(target_price, 1), *add_on_items_next],
        next_interval=catalog.CYCLE_INTERVAL[target_cycle],
        idempotency_key=f"schedule-change:{schedule.id}:{target_price}:{attempt}",
    )
    state = await gateway.retrieve_subscription(subscription.stripe_subscription_id)
    await _record(
        sessionmaker,
        subscription.id,
        state,
        now=clock.now(),
        pending=(target_plan.id, target_cycle),
        observed_at=clock.now(),
    )
    return ChangeOutcome(subscription.id)


async def cancel_pending_change(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    customer: Customer,
) -> ChangeOutcome:
    async with sessionmaker() as session:
        subscription = await load_changeable(session, customer)
    if subscription.pending_plan_id is None or subscription.stripe_schedule_id is None:
        raise ActionNotAllowed("no_pending_change", "No plan change is waiting for the period end.")
    assert subscription.stripe_subscription_id is not None
    await _release_schedule(gateway, subscription)
    state = await gateway.retrieve_subscription(subscription.stripe_subscription_id)
    await _record(sessionmaker, subscription.id, state, now=clock.now())
    return ChangeOutcome(subscription.id)


async def cancel(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    redis: ArqRedis,
    customer: Customer,
    at_period_end: bool,
    attempt: str,
) -> ChangeOutcome:
    """Cancel at the period end (default: access until then), or now on request."""
    async with sessionmaker() as session:
        subscription = await load_changeable(session, customer)
    if at_period_end and subscription.cancel_at_period_end:
        raise ActionNotAllowed(
            "already_canceling", "The subscription already ends at the period end."
        )
    assert subscription.stripe_subscription_id is not None
    # A pending downgrade would otherwise renew the subscription the customer is leaving.
    await _release_schedule(gateway, subscription)
    if at_period_end:
        state = await gateway.update_subscription(
            subscription_id=subscription.stripe_subscription_id,
            params={"cancel_at_period_end": True},
            idempotency_key=f"cancel-at-period-end:{subscription.id}:{attempt}",
        )
    else:
        state = await gateway.cancel_subscription_now(
            subscription_id=subscription.stripe_subscription_id,
            idempotency_key=f"cancel-now:{subscription.id}:{attempt}",
        )
    await _record(sessionmaker, subscription.id, state, now=clock.now())
    if not at_period_end:
        # The last usage period's overage is billed now, not when the
        # `customer.subscription.deleted` webhook arrives (which then finds it billed). Usage
        # sits above subscriptions, so it is asked by job name; should the enqueue fail, that
        # webhook (or the missed-close cron) bills the period instead.
        await enqueue_job(
            redis,
            BILL_ENDED_SUBSCRIPTION_USAGE,
            subscription.id,
            job_id=f"bill-ended-usage:{subscription.id}",
        )
    return ChangeOutcome(subscription.id)


async def reactivate(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    customer: Customer,
    attempt: str,
) -> ChangeOutcome:
    """Undo a cancellation at the period end, before the period ends."""
    async with sessionmaker() as session:
        subscription = await load_changeable(session, customer)
    if not subscription.cancel_at_period_end:
        raise ActionNotAllowed(
            "subscription_not_canceling", "The subscription is not set to end; nothing to undo."
        )
    assert subscription.stripe_subscription_id is not None
    state = await gateway.update_subscription(
        subscription_id=subscription.stripe_subscription_id,
        params={"cancel_at_period_end": False},
        idempotency_key=f"reactivate:{subscription.id}:{attempt}",
    )
    await _record(sessionmaker, subscription.id, state, now=clock.now())
    return ChangeOutcome(subscription.id)


async def set_add_on(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    customer: Customer,
    manage_request: ManageRequest,
    attempt: str,
) -> ChangeOutcome:
    """`add_addon` sets the add-on's quantity (adding it if missing; more is charged now with
    prorations); `remove_addon` takes `quantity` off, or all of it (credited on the next
    invoice)."""
    if manage_request.addon_id is None:
        raise ActionNotAllowed("addon_id_required", "Name the addon_id.")
    removing = manage_request.action == "remove_addon"
    price: str | None = None
    async with sessionmaker() as session:
        subscription = await load_changeable(session, customer)
        if subscription.stripe_schedule_id is not None:
            # The scheduled phase lists the add-ons too; changing one now would be undone (or
            # billed again) when that phase starts.
            raise ActionNotAllowed(
                "pending_change_exists",
                "A plan change is scheduled; cancel it (cancel_pending_change) first.",
            )
        line = await repository.get_add_on_line(session, subscription.id, manage_request.addon_id)
        if removing and line is None:
            raise ActionNotAllowed(
                "add_on_not_on_subscription", "The subscription does not carry this add-on."
            )
        quantity = manage_request.quantity or 1
        if removing:
            assert line is not None
            quantity = max(line.quantity - (manage_request.quantity or line.quantity), 0)
        else:
            add_on = await catalog.resolve_add_on(session, manage_request.addon_id, quantity)
            price = catalog.price_id(add_on, subscription.billing_cycle)
    assert subscription.stripe_subscription_id is not None
    current_quantity = line.quantity if line is not None else 0
    key = (
        f"add-on:{subscription.id}:{manage_request.addon_id}:"
        f"{current_quantity}->{quantity}:{attempt}"
    )
    if line is None or line.stripe_subscription_item_id is None:
        assert price is not None
        await gateway.add_subscription_item(
            subscription_id=subscription.stripe_subscription_id,
            price_id=price,
            quantity=quantity,
            idempotency_key=key,
        )
    elif quantity == 0:
        await gateway.remove_subscription_item(
            item_id=line.stripe_subscription_item_id, idempotency_key=key
        )
    elif quantity != line.quantity:
        await gateway.update_subscription_item(
            item_id=line.stripe_subscription_item_id,
            quantity=quantity,
            idempotency_key=key,
            charge_now=quantity > line.quantity,
        )
    else:
        raise ActionNotAllowed("add_on_unchanged", f"The subscription has {quantity} already.")
    state = await gateway.retrieve_subscription(subscription.stripe_subscription_id)
    # Dated now: the add-on history prices each usage period by what was held at its end.
    await _record(sessionmaker, subscription.id, state, now=clock.now(), observed_at=clock.now())
    return await _charge_outcome(gateway, subscription.id, state)
