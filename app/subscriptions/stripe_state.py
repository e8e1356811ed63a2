"""Bring a local subscription row in line with the subscription as Stripe holds it."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.periods import usage_period_containing
from app.models import (
    Subscription,
    SubscriptionAddOn,
    SubscriptionAddOnChange,
    SubscriptionAnchorChange,
    SubscriptionPlanChange,
)
from app.plans import service as plans_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import SubscriptionState
from app.subscriptions import lifecycle_notices, repository
from app.subscriptions.lifecycle_notices import SubscriptionBefore


async def apply_stripe_state(
    session: AsyncSession,
    subscription: Subscription,
    state: SubscriptionState,
    *,
    now: datetime,
    observed_at: datetime | None = None,
) -> None:
    """Copy Stripe's view onto the row: status, periods (from the items), trial, cancellation,
    the plan behind the plan item, and the add-on items. Stripe is the truth for these.
    The customer's notices the change calls for (welcome, plan changed, cancellation
    scheduled, ended) are written with it (`lifecycle_notices`).

    `observed_at` is when Stripe held this state (the event's time, or now after our own
    call): a plan change is dated by it (see `plan_change_effective_at`)."""
    before = SubscriptionBefore.of(subscription)
    plan_changed_at: datetime | None = None
    subscription.stripe_subscription_id = state.id
    subscription.status = state.status
    _record_anchor_change(session, subscription, state.billing_cycle_anchor, observed_at)
    subscription.billing_cycle_anchor = (
        state.billing_cycle_anchor or subscription.billing_cycle_anchor
    )
    subscription.current_period_start = state.current_period_start
    subscription.current_period_end = state.current_period_end
    subscription.trial_end = state.trial_end
    subscription.cancel_at_period_end = state.cancel_at_period_end
    subscription.canceled_at = state.canceled_at
    subscription.ended_at = state.ended_at
    subscription.reserved_until = None
    if state.schedule_id is None:
        subscription.pending_plan_id = None
        subscription.pending_billing_cycle = None
        subscription.pending_change_at = None
    subscription.stripe_schedule_id = state.schedule_id

    price_ids = {item.price_id for item in state.items}
    plans = await plans_service.plans_by_price_ids(session, price_ids)
    add_ons = await plans_service.add_ons_by_price_ids(session, price_ids)
    lines = list(await repository.list_add_on_lines(session, subscription.id))
    lines_by_item = {line.stripe_subscription_item_id: line for line in lines}
    lines_by_add_on = {line.add_on_id: line for line in lines}
    item_ids = {item.id for item in state.items}
    for item in state.items:
        if item.price_id in plans:
            plan, cycle = plans[item.price_id]
            if (plan.id, cycle) != (subscription.plan_id, subscription.billing_cycle):
                plan_changed_at = plan_change_effective_at(
                    subscription, item.current_period_start, observed_at
                )
                session.add(
                    SubscriptionPlanChange(
                        subscription_id=subscription.id,
                        from_plan_id=subscription.plan_id,
                        to_plan_id=plan.id,
                        from_billing_cycle=subscription.billing_cycle,
                        to_billing_cycle=cycle,
                        effective_at=plan_changed_at,
                    )
                )
            subscription.plan_id = plan.id
            subscription.billing_cycle = cycle
            subscription.stripe_plan_item_id = item.id
        elif item.price_id in add_ons:
            add_on = add_ons[item.price_id]
            line = lines_by_item.get(item.id) or lines_by_add_on.get(add_on.id)
            if line is None:
                line = SubscriptionAddOn(subscription_id=subscription.id, add_on_id=add_on.id)
                session.add(line)
            _record_add_on_change(
                session, subscription, add_on.id, line.quantity or 0, item.quantity, observed_at
            )
            line.quantity = item.quantity
            line.stripe_subscription_item_id = item.id
        elif item.id in lines_by_item:
            # A price since replaced in the catalog (`--force-update`): the item is the same
            # add-on, still billed at the price it was sold at.
            lines_by_item[item.id].quantity = item.quantity
    for line in lines:
        if (
            line.stripe_subscription_item_id is not None
            and line.stripe_subscription_item_id not in item_ids
        ):
            _record_add_on_change(
                session, subscription, line.add_on_id, line.quantity, 0, observed_at
            )
            await repository.delete_add_on_line(session, line)
    await lifecycle_notices.notify_changes(
        session, subscription, before, plan_change_effective_at=plan_changed_at, now=now
    )
    await session.flush()


def _record_anchor_change(
    session: AsyncSession,
    subscription: Subscription,
    new_anchor: datetime | None,
    observed_at: datetime | None,
) -> None:
    """The anchor history (`SubscriptionAnchorChange`): Stripe moves the anchor to the moment
    of a cycle switch (or of a trial's early end), which is when it takes effect; one set in
    the future takes effect when we saw it."""
    old_anchor = subscription.billing_cycle_anchor
    if old_anchor is None or new_anchor is None or new_anchor == old_anchor:
        return
    effective_at = min(new_anchor, observed_at) if observed_at is not None else new_anchor
    session.add(
        SubscriptionAnchorChange(
            subscription_id=subscription.id,
            from_anchor=old_anchor,
            to_anchor=new_anchor,
            effective_at=effective_at,
        )
    )


def _record_add_on_change(
    session: AsyncSession,
    subscription: Subscription,
    add_on_id: int,
    from_quantity: int,
    to_quantity: int,
    observed_at: datetime | None,
) -> None:
    """The add-on history (`SubscriptionAddOnChange`), dated when Stripe held the new
    quantity (the event's time, or now after our own call). A state read without a time
    (a repair from Stripe) is dated at the subscription's current period start: the best
    there is, and it prices no period already closed (closes keep their terms)."""
    if from_quantity == to_quantity:
        return
    effective_at = observed_at or subscription.current_period_start or subscription.created_at
    session.add(
        SubscriptionAddOnChange(
            subscription_id=subscription.id,
            add_on_id=add_on_id,
            from_quantity=from_quantity,
            to_quantity=to_quantity,
            effective_at=effective_at,
        )
    )


def plan_change_effective_at(
    subscription: Subscription, item_period_start: datetime | None, observed_at: datetime | None
) -> datetime:
    """From when a new plan prices usage: the start of the usage period it was seen in.

    A mid-period upgrade counts from that period's start (the new plan bills all of it); a
    renewal onto a new plan from the renewal. Usage periods are monthly, so for a yearly
    subscription that is the month of the change, not the item's year: a change made just
    after a month ended must not price the month that ended. Without an observation time,
    the item's period start is the best there is."""
    period_start = item_period_start or subscription.current_period_start
    anchor = subscription.billing_cycle_anchor or period_start
    if observed_at is not None and anchor is not None:
        month_start = usage_period_containing(anchor, observed_at).start
        return max(month_start, period_start) if period_start else month_start
    return period_start or subscription.created_at


async def refresh_from_stripe(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    stripe_subscription_id: str,
    now: datetime,
) -> Subscription | None:
    """Re-read a subscription from Stripe and apply it (for webhooks and reconciliation).

    Returns None when the subscription is not one of ours.
    """
    state = await gateway.retrieve_subscription(stripe_subscription_id)
    async with sessionmaker.begin() as session:
        subscription = await repository.get_by_stripe_id(
            session, stripe_subscription_id, for_update=True
        )
        if subscription is None:
            return None
        await apply_stripe_state(session, subscription, state, now=now)
        return subscription
