"""arq jobs and crons of overage billing: the sweeper, the closes no event makes, and the
adjustments for late records.
"""

from datetime import timedelta
from typing import Any

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import and_, exists, func, or_, select, true
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.models import (
    OperatorAlert,
    OverageCharge,
    Subscription,
    UsagePeriodTotals,
    UsageRecord,
)
from app.subscriptions import repository as subscriptions_repository
from app.usage.overage_billing.closing import ENDED_STATUSES, adjust_billed_periods, close_periods
from app.usage.overage_billing.invoicing import bill_charge, bill_charges

logger = structlog.get_logger(__name__)

# A yearly subscription's monthly period is closed this long after it ended: in-flight
# records land first (later ones are adjustments anyway).
YEARLY_CLOSE_GRACE = timedelta(hours=1)
# A period that should have been closed by an event and was not (the event never came): this
# long after its end it is closed anyway, for the next invoice. Never lost, at worst late.
MISSED_CLOSE_GRACE = timedelta(days=1)
# Records are accepted up to 35 days after a period ended; adjustments look that far back.
ADJUSTMENT_WINDOW = timedelta(days=36)
# A record written while its period was being closed can carry a `created_at` just before
# `overage_billed_at` and still be committed after it: look again at those too.
ADJUSTMENT_RECHECK = timedelta(minutes=5)
# The sweeper leaves a charge this young to the attempt made right after its commit.
SWEEP_GRACE = timedelta(seconds=60)
# A charge still pending after this raises an operator alert (once).
STUCK_AFTER = timedelta(hours=6)
SWEEP_BATCH = 500
BILL_JOB = "bill_overage_charge"


async def bill_overage_charge(ctx: dict[str, Any], charge_id: int) -> str:
    """arq job: bill one charge (enqueued by the sweeper, a job id per attempt)."""
    return await bill_charge(
        sessionmaker=ctx["sessionmaker"],
        gateway=ctx["stripe_gateway"],
        clock=ctx["clock"],
        charge_id=charge_id,
    )


async def sweep_overage_charges(ctx: dict[str, Any]) -> int:
    """Cron: enqueue a billing job for every charge still pending (the row is the truth,
    the queue only a messenger), and alert an operator about one pending too long."""
    sessionmaker: async_sessionmaker[AsyncSession] = ctx["sessionmaker"]
    clock: Clock = ctx["clock"]
    redis: ArqRedis = ctx["redis"]
    now = clock.now()
    async with sessionmaker.begin() as session:
        pending = (
            await session.execute(
                select(OverageCharge.id, OverageCharge.created_at)
                .where(
                    OverageCharge.status == "pending",
                    OverageCharge.created_at <= now - SWEEP_GRACE,
                )
                .order_by(OverageCharge.id)
                .limit(SWEEP_BATCH)
            )
        ).all()
        for charge_id, created_at in pending:
            if created_at <= now - STUCK_AFTER:
                await session.execute(
                    insert(OperatorAlert)
                    .values(
                        kind="overage_charge_stuck",
                        severity="high",
                        message=f"Overage charge {charge_id} is still not on Stripe; "
                        "see the worker's overage_billing logs.",
                        details={"overage_charge_id": charge_id},
                        dedupe_key=f"overage-charge-stuck:{charge_id}",
                        created_at=now,
                    )
                    .on_conflict_do_nothing(index_elements=["dedupe_key"])
                )
    for charge_id, _ in pending:
        try:
            # A job id per sweep: arq keeps a finished job's id for a while and would refuse
            # the same id again.
            await redis.enqueue_job(
                BILL_JOB, charge_id, _job_id=f"overage-charge:{charge_id}:{int(now.timestamp())}"
            )
        except (RedisError, OSError, TimeoutError) as error:
            logger.warning("overage_enqueue_failed", charge_id=charge_id, error=str(error))
    return len(pending)


async def close_ended_usage_periods(ctx: dict[str, Any]) -> int:
    """Cron: close the monthly periods no invoice closes (a yearly subscription's), and, a
    day late, any period an event should have closed and did not. Returns charges created;
    they are billed at once, with the next invoice (or a one-off one once ended)."""
    sessionmaker: async_sessionmaker[AsyncSession] = ctx["sessionmaker"]
    clock: Clock = ctx["clock"]
    now = clock.now()
    due = or_(
        and_(
            Subscription.billing_cycle == "yearly",
            UsagePeriodTotals.period_end <= now - YEARLY_CLOSE_GRACE,
        ),
        UsagePeriodTotals.period_end <= now - MISSED_CLOSE_GRACE,
        and_(
            Subscription.status.in_(ENDED_STATUSES),
            func.coalesce(Subscription.ended_at, Subscription.canceled_at)
            <= now - MISSED_CLOSE_GRACE,
        ),
    )
    async with sessionmaker() as session:
        subscription_ids = (
            await session.scalars(
                select(UsagePeriodTotals.subscription_id)
                .join(Subscription, Subscription.id == UsagePeriodTotals.subscription_id)
                .where(UsagePeriodTotals.overage_billed_at.is_(None), due)
                .distinct()
            )
        ).all()
    created: list[int] = []
    for subscription_id in subscription_ids:
        async with sessionmaker.begin() as session:
            subscription = await subscriptions_repository.get_for_update(session, subscription_id)
            ended = subscription.status in ENDED_STATUSES and (
                (subscription.ended_at or subscription.canceled_at or now)
                <= now - MISSED_CLOSE_GRACE
            )
            yearly = subscription.billing_cycle == "yearly"
            grace = YEARLY_CLOSE_GRACE if yearly else MISSED_CLOSE_GRACE
            which = true() if ended else UsagePeriodTotals.period_end <= now - grace
            created += await close_periods(session, subscription, which, invoice_id=None, now=now)
    await bill_charges(
        sessionmaker=sessionmaker, gateway=ctx["stripe_gateway"], clock=clock, charge_ids=created
    )
    return len(created)


async def bill_overage_adjustments(ctx: dict[str, Any]) -> int:
    """Cron: for each billed period that received records after it was billed, charge the
    difference between what its totals now imply and what was charged (sequence 1, 2, ...),
    with the next invoice, priced with the terms the period was closed with. Returns
    adjustment charges created.
    """
    sessionmaker: async_sessionmaker[AsyncSession] = ctx["sessionmaker"]
    clock: Clock = ctx["clock"]
    now = clock.now()
    late_record = exists().where(
        UsageRecord.subscription_id == UsagePeriodTotals.subscription_id,
        UsageRecord.period_start == UsagePeriodTotals.period_start,
        or_(
            UsageRecord.created_at > UsagePeriodTotals.overage_billed_at - ADJUSTMENT_RECHECK,
            # A user's record replaced by the telephony backend's keeps its `created_at`:
            # periods holding one are looked at again while late records are accepted (a
            # look that finds nothing new charges nothing).
            UsageRecord.replaced_payload.is_not(None),
        ),
    )
    async with sessionmaker() as session:
        candidates = (
            await session.execute(
                select(UsagePeriodTotals.subscription_id, UsagePeriodTotals.id)
                .where(
                    UsagePeriodTotals.overage_billed_at.is_not(None),
                    UsagePeriodTotals.period_end > now - ADJUSTMENT_WINDOW,
                    late_record,
                )
                .order_by(UsagePeriodTotals.subscription_id, UsagePeriodTotals.period_start)
            )
        ).all()
    by_subscription: dict[int, list[int]] = {}
    for subscription_id, totals_id in candidates:
        by_subscription.setdefault(subscription_id, []).append(totals_id)
    created: list[int] = []
    for subscription_id, totals_ids in by_subscription.items():
        async with sessionmaker.begin() as session:
            subscription = await subscriptions_repository.get_for_update(session, subscription_id)
            created += await adjust_billed_periods(session, subscription, totals_ids, now)
    await bill_charges(
        sessionmaker=sessionmaker, gateway=ctx["stripe_gateway"], clock=clock, charge_ids=created
    )
    return len(created)
