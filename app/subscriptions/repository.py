from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    PaymentRetry,
    Subscription,
    SubscriptionAddOn,
    SubscriptionAddOnChange,
    SubscriptionAnchorChange,
    SubscriptionPlanChange,
)
from app.models.subscription import LIVE_STATUSES


async def get_live_for_customer(
    session: AsyncSession, customer_id: int, *, for_update: bool = False
) -> Subscription | None:
    query = select(Subscription).where(
        Subscription.customer_id == customer_id, Subscription.status.in_(LIVE_STATUSES)
    )
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def get_latest_for_customer(session: AsyncSession, customer_id: int) -> Subscription | None:
    return await session.scalar(
        select(Subscription)
        .where(Subscription.customer_id == customer_id, Subscription.status != "pending")
        .order_by(Subscription.id.desc())
        .limit(1)
    )


async def get(session: AsyncSession, subscription_id: int) -> Subscription:
    subscription = await session.get(Subscription, subscription_id)
    assert subscription is not None
    return subscription


async def get_for_update(session: AsyncSession, subscription_id: int) -> Subscription:
    subscription = await session.scalar(
        select(Subscription).where(Subscription.id == subscription_id).with_for_update()
    )
    assert subscription is not None
    return subscription


async def get_by_stripe_id(
    session: AsyncSession, stripe_subscription_id: str, *, for_update: bool = False
) -> Subscription | None:
    query = select(Subscription).where(
        Subscription.stripe_subscription_id == stripe_subscription_id
    )
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def list_add_on_lines(
    session: AsyncSession, subscription_id: int
) -> Sequence[SubscriptionAddOn]:
    return (
        await session.scalars(
            select(SubscriptionAddOn)
            .where(SubscriptionAddOn.subscription_id == subscription_id)
            .order_by(SubscriptionAddOn.id)
        )
    ).all()


async def get_add_on_line(
    session: AsyncSession, subscription_id: int, add_on_id: int
) -> SubscriptionAddOn | None:
    return await session.scalar(
        select(SubscriptionAddOn).where(
            SubscriptionAddOn.subscription_id == subscription_id,
            SubscriptionAddOn.add_on_id == add_on_id,
        )
    )


async def delete_add_on_lines(session: AsyncSession, subscription_id: int) -> None:
    await session.execute(
        delete(SubscriptionAddOn).where(SubscriptionAddOn.subscription_id == subscription_id)
    )


async def delete_subscription_with_add_ons(session: AsyncSession, subscription_id: int) -> None:
    await session.execute(
        delete(SubscriptionAddOn).where(SubscriptionAddOn.subscription_id == subscription_id)
    )
    for history in (SubscriptionPlanChange, SubscriptionAnchorChange, SubscriptionAddOnChange):
        await session.execute(delete(history).where(history.subscription_id == subscription_id))
    await session.execute(delete(Subscription).where(Subscription.id == subscription_id))


async def plan_in_force_at(
    session: AsyncSession, *, subscription: Subscription, moment: datetime
) -> int:
    """The plan the subscription was billed by just before `moment`: the latest change that
    took effect before it, else the plan before the first change at or after it, else the
    plan it has now (it never changed)."""
    before = await session.scalar(
        select(SubscriptionPlanChange.to_plan_id)
        .where(
            SubscriptionPlanChange.subscription_id == subscription.id,
            SubscriptionPlanChange.effective_at < moment,
        )
        .order_by(SubscriptionPlanChange.effective_at.desc(), SubscriptionPlanChange.id.desc())
        .limit(1)
    )
    if before is not None:
        return before
    after = await session.scalar(
        select(SubscriptionPlanChange.from_plan_id)
        .where(
            SubscriptionPlanChange.subscription_id == subscription.id,
            SubscriptionPlanChange.effective_at >= moment,
        )
        .order_by(SubscriptionPlanChange.effective_at, SubscriptionPlanChange.id)
        .limit(1)
    )
    return after if after is not None else subscription.plan_id


async def add_on_changes(
    session: AsyncSession, subscription_id: int
) -> Sequence[SubscriptionAddOnChange]:
    """The subscription's add-on quantity changes, oldest first."""
    rows = await session.scalars(
        select(SubscriptionAddOnChange)
        .where(SubscriptionAddOnChange.subscription_id == subscription_id)
        .order_by(SubscriptionAddOnChange.effective_at, SubscriptionAddOnChange.id)
    )
    return rows.all()


async def anchor_changes(
    session: AsyncSession, subscription_id: int
) -> Sequence[SubscriptionAnchorChange]:
    """The subscription's billing anchor changes, oldest first."""
    rows = await session.scalars(
        select(SubscriptionAnchorChange)
        .where(SubscriptionAnchorChange.subscription_id == subscription_id)
        .order_by(SubscriptionAnchorChange.effective_at, SubscriptionAnchorChange.id)
    )
    return rows.all()


async def get_unconfirmed_reservation(
    session: AsyncSession, subscription_id: int, *, for_update: bool
) -> Subscription | None:
    """A subscribe's reservation that never learned its Stripe id."""
    query = select(Subscription).where(
        Subscription.id == subscription_id, Subscription.stripe_subscription_id.is_(None)
    )
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def get_by_checkout_session_id(
    session: AsyncSession, checkout_session_id: str, *, for_update: bool
) -> Subscription | None:
    query = select(Subscription).where(Subscription.checkout_session_id == checkout_session_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def delete_add_on_line(session: AsyncSession, line: SubscriptionAddOn) -> None:
    await session.delete(line)


async def list_linked_to_stripe(session: AsyncSession) -> Sequence[Subscription]:
    """Every subscription Stripe knows, but those still `pending` (a subscribe in flight;
    its request completes it)."""
    return (
        await session.scalars(
            select(Subscription)
            .where(
                Subscription.stripe_subscription_id.is_not(None),
                Subscription.status != "pending",
            )
            .order_by(Subscription.id)
        )
    ).all()


async def insert(session: AsyncSession, subscription: Subscription) -> None:
    session.add(subscription)
    await session.flush()


# --- dunning: the subscriptions in it and their payment retries -----------------------


async def list_in_dunning(session: AsyncSession) -> Sequence[Subscription]:
    return (
        await session.scalars(
            select(Subscription)
            .where(Subscription.dunning_invoice_id.is_not(None))
            .order_by(Subscription.id)
        )
    ).all()


async def find_for_update(session: AsyncSession, subscription_id: int) -> Subscription | None:
    return await session.scalar(
        select(Subscription).where(Subscription.id == subscription_id).with_for_update()
    )


async def get_by_dunning_invoice(
    session: AsyncSession, stripe_invoice_id: str, *, for_update: bool = False
) -> Subscription | None:
    query = select(Subscription).where(Subscription.dunning_invoice_id == stripe_invoice_id)
    if for_update:
        query = query.with_for_update()
    return await session.scalar(query)


async def insert_payment_retry_if_new(session: AsyncSession, retry: dict[str, object]) -> None:
    """One row per (invoice, attempt): a redelivered failure schedules nothing twice."""
    await session.execute(
        pg_insert(PaymentRetry)
        .values(**retry)
        .on_conflict_do_nothing(constraint="uq_payment_retries_invoice_attempt")
    )


async def last_payment_retry_attempt(session: AsyncSession, stripe_invoice_id: str) -> int:
    return int(
        await session.scalar(
            select(func.coalesce(func.max(PaymentRetry.attempt), 0)).where(
                PaymentRetry.stripe_invoice_id == stripe_invoice_id
            )
        )
        or 0
    )


async def get_payment_retry_for_update(session: AsyncSession, retry_id: int) -> PaymentRetry | None:
    return await session.scalar(
        select(PaymentRetry).where(PaymentRetry.id == retry_id).with_for_update()
    )


async def list_payment_retries(
    session: AsyncSession, subscription_ids: Sequence[int]
) -> Sequence[PaymentRetry]:
    return (
        await session.scalars(
            select(PaymentRetry)
            .where(PaymentRetry.subscription_id.in_(subscription_ids))
            .order_by(PaymentRetry.subscription_id, PaymentRetry.attempt)
        )
    ).all()


async def has_payment_retry_in_flight(session: AsyncSession, subscription_id: int) -> bool:
    """An attempt under way, or one asked for now (an operator's, a new card's) not yet run."""
    return bool(
        await session.scalar(
            select(func.count())
            .select_from(PaymentRetry)
            .where(
                PaymentRetry.subscription_id == subscription_id,
                or_(
                    PaymentRetry.status == "running",
                    (PaymentRetry.status == "scheduled") & (PaymentRetry.trigger != "schedule"),
                ),
            )
        )
    )


async def pending_payment_retries(
    session: AsyncSession, stripe_invoice_id: str
) -> Sequence[PaymentRetry]:
    """The invoice's retries still to run (scheduled) or under way (running), first due first."""
    return (
        await session.scalars(
            select(PaymentRetry)
            .where(
                PaymentRetry.stripe_invoice_id == stripe_invoice_id,
                PaymentRetry.status.in_(("scheduled", "running")),
            )
            .order_by(PaymentRetry.due_at, PaymentRetry.attempt)
        )
    ).all()


async def cancel_scheduled_payment_retries(
    session: AsyncSession, *, subscription_id: int, now: datetime
) -> int:
    result = await session.execute(
        update(PaymentRetry)
        .where(
            PaymentRetry.subscription_id == subscription_id,
            PaymentRetry.status == "scheduled",
        )
        .values(status="canceled", finished_at=now)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def due_payment_retry_ids(
    session: AsyncSession, *, now: datetime, stale_before: datetime, limit: int
) -> list[int]:
    """Retries due and not running, and those whose run was claimed before `stale_before`
    and never finished (its worker died): the sweeper runs both."""
    rows = await session.scalars(
        select(PaymentRetry.id)
        .where(
            or_(
                (PaymentRetry.status == "scheduled") & (PaymentRetry.due_at <= now),
                (PaymentRetry.status == "running") & (PaymentRetry.started_at < stale_before),
            )
        )
        .order_by(PaymentRetry.due_at)
        .limit(limit)
    )
    return list(rows)


async def list_trials_ending(
    session: AsyncSession, *, after: datetime, until: datetime
) -> Sequence[Subscription]:
    """Subscriptions still trialing whose trial ends in (after, until]."""
    return (
        await session.scalars(
            select(Subscription)
            .where(
                Subscription.status == "trialing",
                Subscription.trial_end > after,
                Subscription.trial_end <= until,
            )
            .order_by(Subscription.id)
        )
    ).all()
