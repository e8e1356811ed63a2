"""The sweeps of overage billing that no event makes: the pending charges, the periods no
invoice closes, and the adjustments for late records. Run by the crons in `app.usage.tasks`.
"""

from datetime import datetime, timedelta

import structlog
from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.jobs.enqueue import enqueue_job
from app.models.subscription import ENDED_STATUSES
from app.operator_alerts import service as operator_alerts_service
from app.stripe_gateway.client import StripeGateway
from app.subscriptions import service as subscriptions_service
from app.usage.overage_billing import repository
from app.usage.overage_billing.closing import (
    adjust_billed_periods,
    close_periods,
    close_periods_on_cancel,
)
from app.usage.overage_billing.final_invoice import bill_pending_items_of_ended
from app.usage.overage_billing.invoicing import bill_charges

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


async def sweep_pending_charges(
    *, sessionmaker: async_sessionmaker[AsyncSession], redis: ArqRedis, now: datetime
) -> int:
    """Enqueue a billing job for every charge still pending (the row is the truth, the queue
    only a messenger), and alert an operator about one pending too long."""
    async with sessionmaker.begin() as session:
        pending = await repository.pending_charges(
            session, created_before=now - SWEEP_GRACE, limit=SWEEP_BATCH
        )
        for charge_id, created_at in pending:
            if created_at <= now - STUCK_AFTER:
                await operator_alerts_service.raise_alert(
                    session,
                    kind="overage_charge_stuck",
                    message=f"Overage charge {charge_id} is still not on Stripe; "
                    "see the worker's overage_billing logs.",
                    details={"overage_charge_id": charge_id},
                    dedupe_key=f"overage-charge-stuck:{charge_id}",
                    now=now,
                )
    for charge_id, _ in pending:
        # A job id per sweep: arq keeps a finished job's id for a while and would refuse the
        # same id again.
        await enqueue_job(
            redis, BILL_JOB, charge_id, job_id=f"overage-charge:{charge_id}:{int(now.timestamp())}"
        )
    return len(pending)


async def close_unclosed_periods(
    *, sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway, clock: Clock
) -> int:
    """Close the monthly periods no invoice closes (a yearly subscription's), and, a day
    late, any period an event should have closed and did not. Returns charges created; they
    are billed at once, with the next invoice (or a one-off one once ended)."""
    now = clock.now()
    async with sessionmaker() as session:
        subscription_ids = await repository.subscriptions_with_unclosed_periods(
            session, now=now, yearly_grace=YEARLY_CLOSE_GRACE, missed_grace=MISSED_CLOSE_GRACE
        )
    created: list[int] = []
    for subscription_id in subscription_ids:
        async with sessionmaker.begin() as session:
            subscription = await subscriptions_service.lock_subscription(session, subscription_id)
            ended = subscription.status in ENDED_STATUSES and (
                (subscription.ended_at or subscription.canceled_at or now)
                <= now - MISSED_CLOSE_GRACE
            )
            yearly = subscription.billing_cycle == "yearly"
            grace = YEARLY_CLOSE_GRACE if yearly else MISSED_CLOSE_GRACE
            created += await close_periods(
                session,
                subscription,
                ended_by=None if ended else now - grace,
                invoice_id=None,
                now=now,
            )
    await bill_charges(sessionmaker=sessionmaker, gateway=gateway, clock=clock, charge_ids=created)
    return len(created)


async def bill_late_records(
    *, sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway, clock: Clock
) -> int:
    """For each billed period that received records after it was billed, charge the
    difference between what its totals now imply and what was charged (sequence 1, 2, ...),
    with the next invoice, priced with the terms the period was closed with. Returns
    adjustment charges created.
    """
    now = clock.now()
    async with sessionmaker() as session:
        candidates = await repository.billed_periods_with_late_records(
            session, ended_after=now - ADJUSTMENT_WINDOW, recheck=ADJUSTMENT_RECHECK
        )
    by_subscription: dict[int, list[int]] = {}
    for subscription_id, totals_id in candidates:
        by_subscription.setdefault(subscription_id, []).append(totals_id)
    created: list[int] = []
    for subscription_id, totals_ids in by_subscription.items():
        async with sessionmaker.begin() as session:
            subscription = await subscriptions_service.lock_subscription(session, subscription_id)
            created += await adjust_billed_periods(session, subscription, totals_ids, now)
    await bill_charges(sessionmaker=sessionmaker, gateway=gateway, clock=clock, charge_ids=created)
    return len(created)


async def bill_ended_subscription(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    subscription_id: int,
) -> int:
    """An ended subscription's unbilled periods, closed and billed now (an immediate cancel
    asks for this by job; the `customer.subscription.deleted` webhook then finds them
    billed). Returns charges created."""
    async with sessionmaker.begin() as session:
        subscription = await subscriptions_service.lock_subscription(session, subscription_id)
        charge_ids = await close_periods_on_cancel(
            session, subscription=subscription, now=clock.now()
        )
    await bill_charges(
        sessionmaker=sessionmaker, gateway=gateway, clock=clock, charge_ids=charge_ids
    )
    # What was billed before the end and still waits for a next invoice: the final one.
    await bill_pending_items_of_ended(
        sessionmaker=sessionmaker, gateway=gateway, clock=clock, subscription_id=subscription_id
    )
    return len(charge_ids)
