"""The customer's notices about their subscription's life: welcome, trial ending, plan
changed, cancellation scheduled, ended. Each is written through the outbox in the
transaction that records the change, keyed by the fact, so a redelivered webhook or a
second path to the same change (our own call's answer, then Stripe's event) tells the
customer once.

Most are seen in `apply_stripe_state`, the one place every path (subscribe, manage/, the
webhooks, reconciliation) writes Stripe's view of a subscription: comparing the row before
and after says what changed."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.models import Subscription
from app.notifications import service as notifications_service
from app.plans import service as plans_service
from app.subscriptions import repository

# The cron's reminder: three days before the trial ends (Stripe's trial_will_end comes then).
TRIAL_REMINDER_AHEAD = timedelta(days=3)
# The statuses that count as having started: a welcome is owed once one is reached.
_STARTED = ("trialing", "active", "past_due")
_ENDED = ("canceled", "incomplete_expired")


@dataclass(frozen=True, slots=True)
class SubscriptionBefore:
    """What the row said before Stripe's state was copied onto it."""

    status: str | None
    cancel_at_period_end: bool
    plan_id: int
    billing_cycle: str

    @classmethod
    def of(cls, subscription: Subscription) -> "SubscriptionBefore":
        return cls(
            status=subscription.status,
            cancel_at_period_end=bool(subscription.cancel_at_period_end),
            plan_id=subscription.plan_id,
            billing_cycle=subscription.billing_cycle,
        )


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


async def _plan_name(session: AsyncSession, plan_id: int) -> str:
    plan = await plans_service.find_plan(session, plan_id)
    return plan.name if plan is not None else f"plan {plan_id}"


async def notify_changes(
    session: AsyncSession,
    subscription: Subscription,
    before: SubscriptionBefore,
    *,
    plan_change_effective_at: datetime | None,
    now: datetime,
) -> None:
    """The notices the change from `before` to the row as it is now calls for."""
    customer_id = subscription.customer_id
    status = subscription.status
    if status in _STARTED and before.status not in _STARTED:
        await notifications_service.notify(
            session,
            customer_id=customer_id,
            kind="welcome",
            dedupe_key=f"welcome:{subscription.id}",
            payload={
                "subscription_id": subscription.id,
                "plan_name": await _plan_name(session, subscription.plan_id),
                "billing_cycle": subscription.billing_cycle,
                "status": status,
                "trial_end": _iso(subscription.trial_end),
            },
            now=now,
        )
    if plan_change_effective_at is not None:
        await notifications_service.notify(
            session,
            customer_id=customer_id,
            kind="plan_changed",
            dedupe_key=(
                f"plan_changed:{subscription.id}:{subscription.plan_id}:"
                f"{subscription.billing_cycle}:{int(plan_change_effective_at.timestamp())}"
            ),
            payload={
                "subscription_id": subscription.id,
                "from_plan": await _plan_name(session, before.plan_id),
                "to_plan": await _plan_name(session, subscription.plan_id),
                "billing_cycle": subscription.billing_cycle,
                "effective_at": plan_change_effective_at.isoformat(),
            },
            now=now,
        )
    ends_at = subscription.current_period_end
    if (
        subscription.cancel_at_period_end
        and not before.cancel_at_period_end
        and status not in _ENDED
        and ends_at is not None
    ):
        await notifications_service.notify(
            session,
            customer_id=customer_id,
            kind="cancellation_scheduled",
            dedupe_key=f"cancellation_scheduled:{subscription.id}:{int(ends_at.timestamp())}",
            payload={
                "subscription_id": subscription.id,
                "plan_name": await _plan_name(session, subscription.plan_id),
                "ends_at": ends_at.isoformat(),
            },
            now=now,
        )
    if status == "canceled" and before.status in (*_STARTED, "unpaid", "paused"):
        ended_at = subscription.ended_at or subscription.canceled_at or now
        await notifications_service.notify(
            session,
            customer_id=customer_id,
            kind="subscription_ended",
            dedupe_key=f"subscription_ended:{subscription.id}",
            payload={
                "subscription_id": subscription.id,
                "plan_name": await _plan_name(session, subscription.plan_id),
                "ended_at": ended_at.isoformat(),
            },
            now=now,
        )


async def remind_trial_ending(
    session: AsyncSession, *, subscription: Subscription, trial_end: datetime, now: datetime
) -> bool:
    """The trial reminder, once per trial end whichever comes first: Stripe's
    `customer.subscription.trial_will_end` or the cron below (same key)."""
    return await notifications_service.notify(
        session,
        customer_id=subscription.customer_id,
        kind="trial_will_end",
        dedupe_key=f"trial_will_end:{subscription.id}:{int(trial_end.timestamp())}",
        payload={"trial_end": trial_end.isoformat(), "subscription_id": subscription.id},
        now=now,
    )


async def remind_trials_ending(
    *, sessionmaker: async_sessionmaker[AsyncSession], clock: Clock
) -> int:
    """Cron: a reminder for each trial ending within three days that has none yet (the
    event never came, or came before the service ran); returns how many were written."""
    now = clock.now()
    written = 0
    async with sessionmaker.begin() as session:
        for subscription in await repository.list_trials_ending(
            session, after=now, until=now + TRIAL_REMINDER_AHEAD
        ):
            assert subscription.trial_end is not None
            written += await remind_trial_ending(
                session, subscription=subscription, trial_end=subscription.trial_end, now=now
            )
    return written
