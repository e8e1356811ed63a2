"""Every query of overage billing: `overage_charges` (owned here) and the usage periods it
closes. Subscriptions are joined read-only, to find which periods are due."""

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import OverageCharge, Subscription, UsagePeriodTotals, UsageRecord
from app.models.subscription import ENDED_STATUSES


async def pending_charges(
    session: AsyncSession, *, created_before: datetime, limit: int
) -> Sequence[tuple[int, datetime]]:
    """(id, created_at) of the charges still `pending`, oldest first."""
    rows = await session.execute(
        select(OverageCharge.id, OverageCharge.created_at)
        .where(OverageCharge.status == "pending", OverageCharge.created_at <= created_before)
        .order_by(OverageCharge.id)
        .limit(limit)
    )
    return [(charge_id, created_at) for charge_id, created_at in rows.all()]


async def subscriptions_with_unclosed_periods(
    session: AsyncSession, *, now: datetime, yearly_grace: timedelta, missed_grace: timedelta
) -> Sequence[int]:
    """Subscriptions holding a period no invoice will close: a yearly subscription's ended
    month, any period ended `missed_grace` ago, or any period of a subscription that ended
    that long ago."""
    due = or_(
        and_(
            Subscription.billing_cycle == "yearly",
            UsagePeriodTotals.period_end <= now - yearly_grace,
        ),
        UsagePeriodTotals.period_end <= now - missed_grace,
        and_(
            Subscription.status.in_(ENDED_STATUSES),
            func.coalesce(Subscription.ended_at, Subscription.canceled_at) <= now - missed_grace,
        ),
    )
    return (
        await session.scalars(
            select(UsagePeriodTotals.subscription_id)
            .join(Subscription, Subscription.id == UsagePeriodTotals.subscription_id)
            .where(UsagePeriodTotals.overage_billed_at.is_(None), due)
            .distinct()
        )
    ).all()


def periods_ended_before(moment: datetime | None) -> ColumnElement[bool]:
    """Which of a subscription's periods a close takes: those ended before `moment`, or all
    of them (None)."""
    return true() if moment is None else UsagePeriodTotals.period_end <= moment


async def billed_periods_with_late_records(
    session: AsyncSession, *, ended_after: datetime, recheck: timedelta
) -> Sequence[tuple[int, int]]:
    """(subscription id, totals id) of billed periods that got records after their close."""
    late_record = exists().where(
        UsageRecord.subscription_id == UsagePeriodTotals.subscription_id,
        UsageRecord.period_start == UsagePeriodTotals.period_start,
        or_(
            UsageRecord.created_at > UsagePeriodTotals.overage_billed_at - recheck,
            # A user's record replaced by the telephony backend's keeps its `created_at`:
            # periods holding one are looked at again while late records are accepted (a
            # look that finds nothing new charges nothing).
            UsageRecord.replaced_payload.is_not(None),
        ),
    )
    rows = await session.execute(
        select(UsagePeriodTotals.subscription_id, UsagePeriodTotals.id)
        .where(
            UsagePeriodTotals.overage_billed_at.is_not(None),
            UsagePeriodTotals.period_end > ended_after,
            late_record,
        )
        .order_by(UsagePeriodTotals.subscription_id, UsagePeriodTotals.period_start)
    )
    return [(subscription_id, totals_id) for subscription_id, totals_id in rows.all()]


async def list_charges(session: AsyncSession, charge_ids: Sequence[int]) -> Sequence[OverageCharge]:
    """Overage charges by id (what an invoice's overage lines were computed from)."""
    if not charge_ids:
        return []
    return (
        await session.scalars(select(OverageCharge).where(OverageCharge.id.in_(charge_ids)))
    ).all()
