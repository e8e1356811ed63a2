from sqlalchemy.ext.asyncio import AsyncSession

from app.customers import service as customers_service
from app.models import Subscription
from app.subscriptions import catalog
from app.subscriptions.schemas import (
    PendingChange,
    PlanSummary,
    SubscriptionAddOnPublic,
    SubscriptionPublic,
)


async def describe_subscription(
    session: AsyncSession, subscription: Subscription
) -> SubscriptionPublic:
    plan_ids = {subscription.plan_id}
    if subscription.pending_plan_id is not None:
        plan_ids.add(subscription.pending_plan_id)
    plans = await catalog.plans_by_ids(session, plan_ids)
    plan = plans[subscription.plan_id]
    customer = await customers_service.get(session, subscription.customer_id)
    pending_change = None
    if subscription.pending_plan_id is not None:
        pending_plan = plans[subscription.pending_plan_id]
        pending_change = PendingChange(
            plan=PlanSummary(id=pending_plan.id, slug=pending_plan.slug, name=pending_plan.name),
            billing_cycle=subscription.pending_billing_cycle or subscription.billing_cycle,
            effective_at=subscription.pending_change_at,
        )
    add_ons = [
        SubscriptionAddOnPublic(
            addon_id=add_on.id, slug=add_on.slug, name=add_on.name, quantity=line.quantity
        )
        for line, add_on in await catalog.add_on_lines(session, subscription.id)
    ]
    return SubscriptionPublic(
        id=subscription.id,
        status=subscription.status,
        plan=PlanSummary(id=plan.id, slug=plan.slug, name=plan.name),
        billing_cycle=subscription.billing_cycle,
        current_period_start=subscription.current_period_start,
        current_period_end=subscription.current_period_end,
        trial_end=subscription.trial_end,
        cancel_at_period_end=subscription.cancel_at_period_end,
        canceled_at=subscription.canceled_at,
        add_ons=add_ons,
        pending_change=pending_change,
        failed_payment_attempts=subscription.failed_payment_attempts,
        grace_period_ends_at=subscription.grace_period_ends_at,
        suspended_at=customer.suspended_at if customer else None,
        stripe_subscription_id=subscription.stripe_subscription_id,
        in_grace=in_dunning_grace(subscription),
        grace_period_end=subscription.grace_period_ends_at,
        next_payment_retry=subscription.next_payment_retry_at,
        last_decline_code=subscription.last_decline_code,
        payment_action_required=subscription.dunning_action_required,
        payment_overdue_since=subscription.payment_overdue_at,
    )


def in_dunning_grace(subscription: Subscription) -> bool:
    """A failed payment being retried, access kept: in dunning and not suspended for it."""
    return (
        subscription.dunning_invoice_id is not None
        and subscription.payment_overdue_at is None
        and subscription.status == "past_due"
    )
