"""Every query of overage billing: `overage_charges` (owned here) and the usage periods it
closes (`usage_period_totals`, `usage_records`: the usage domain's, of which this is a part).

`subscriptions` is joined read-only, and only where it narrows a query to the rows it must
touch in one indexed statement: which periods are due for a close, and which charges are
the invoice's customer's. Subscriptions themselves are read through
`app.subscriptions.service`, customers through `app.customers.service`, and the
billing-history rows of the charges are written by `app.billing_history.service`.
"""

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.models import OverageCharge, Subscription, UsagePeriodTotals, UsageRecord
from app.models.subscription import ENDED_STATUSES
from app.usage.overage import OverageAmounts, OverageTerms

# --- the sweeps ------------------------------------------------------------------------------


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
    that long ago. Joins `subscriptions` read-only: its cycle and end decide which periods
    are due, in the one statement the cron runs."""
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


# --- closing periods -------------------------------------------------------------------------


async def lock_unbilled_periods(
    session: AsyncSession,
    *,
    subscription_id: int,
    started_before: datetime | None,
    ended_by: datetime | None,
) -> Sequence[UsagePeriodTotals]:
    """The subscription's periods not billed yet, oldest first, locked: those that started
    before `started_before` and ended by `ended_by` (either None: no bound).

    Locked, so a record counted meanwhile waits, then finds the period billed and becomes an
    adjustment, and a second close finds it billed and does nothing."""
    query = select(UsagePeriodTotals).where(
        UsagePeriodTotals.subscription_id == subscription_id,
        UsagePeriodTotals.overage_billed_at.is_(None),
    )
    if started_before is not None:
        query = query.where(UsagePeriodTotals.period_start < started_before)
    if ended_by is not None:
        query = query.where(UsagePeriodTotals.period_end <= ended_by)
    return (
        await session.scalars(query.order_by(UsagePeriodTotals.period_start).with_for_update())
    ).all()


async def lock_periods(
    session: AsyncSession, totals_ids: Sequence[int]
) -> Sequence[UsagePeriodTotals]:
    """Periods by id, oldest first, locked (an adjustment reads their counters and writes
    their closing terms, while ingestion may be counting a record into them)."""
    return (
        await session.scalars(
            select(UsagePeriodTotals)
            .where(UsagePeriodTotals.id.in_(totals_ids))
            .order_by(UsagePeriodTotals.period_start)
            .with_for_update()
        )
    ).all()


def keep_closing_terms(totals: UsagePeriodTotals, terms: OverageTerms, in_trial: bool) -> None:
    """Store the terms a period is closed with on it: a late record is priced with them,
    not with whatever plan the customer has by then. Written at the caller's flush."""
    totals.closed_included_minutes = terms.included_minutes
    totals.closed_agent_limit = terms.agent_limit
    totals.closed_rate_per_minute = terms.rate_per_minute
    totals.closed_rate_per_agent = terms.rate_per_agent
    totals.closed_currency = terms.currency
    totals.closed_in_trial = in_trial


def mark_period_billed(totals: UsagePeriodTotals, billed_at: datetime) -> None:
    """The period is billed up to now: records written after `billed_at` are late ones.
    Written at the caller's flush."""
    totals.overage_billed_at = billed_at


async def period_charges(
    session: AsyncSession, *, subscription_id: int, period_start: datetime
) -> Sequence[OverageCharge]:
    """Every charge of one period (its first and its adjustments), to tell what it was
    charged so far."""
    return (
        await session.scalars(
            select(OverageCharge).where(
                OverageCharge.subscription_id == subscription_id,
                OverageCharge.period_start == period_start,
            )
        )
    ).all()


async def insert_charge(
    session: AsyncSession,
    *,
    totals: UsagePeriodTotals,
    sequence: int,
    amounts: OverageAmounts,
    terms: OverageTerms,
    invoice_id: str | None,
    now: datetime,
) -> int | None:
    """A `pending` charge of the period; its id, or None when the period already has a
    charge of that sequence.

    ON CONFLICT DO NOTHING: the unique (subscription, period, sequence) is the referee when
    two closes meet (three deliveries of one invoice.created make one row)."""
    charge_id: int | None = await session.scalar(
        insert(OverageCharge)
        .values(
            subscription_id=totals.subscription_id,
            period_start=totals.period_start,
            period_end=totals.period_end,
            sequence=sequence,
            minutes_over=amounts.minutes_over,
            agents_over=amounts.agents_over,
            minutes_amount=amounts.minutes_amount,
            agents_amount=amounts.agents_amount,
            amount=amounts.amount,
            currency=amounts.currency,
            status="pending",
            stripe_invoice_id=invoice_id,
            created_at=now,
            # The rates the amounts were computed at, shown on the invoice PDF's lines.
            rate_per_minute=terms.rate_per_minute,
            rate_per_agent=terms.rate_per_agent,
        )
        .on_conflict_do_nothing(index_elements=["subscription_id", "period_start", "sequence"])
        .returning(OverageCharge.id)
    )
    return charge_id


# --- billing a charge ------------------------------------------------------------------------

# Advisory-lock namespace of overage charges (pg_try_advisory_lock(namespace, charge id)).
_CHARGE_LOCK_NAMESPACE = 7_301


@asynccontextmanager
async def charge_billing_lock(
    sessionmaker: async_sessionmaker[AsyncSession], charge_id: int
) -> AsyncIterator[bool]:
    """One biller per charge at a time, across workers; yields whether this one holds it.

    A session-level advisory lock on an autocommit connection: it spans the Stripe calls
    without holding a transaction open. Without it, a run that found the invoice finalized
    could add the lines as pending items while another run had just added them to the
    draft: billed twice."""
    engine = sessionmaker.kw["bind"]
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        held = bool(
            await autocommit.scalar(
                text("SELECT pg_try_advisory_lock(:namespace, :charge)"),
                {"namespace": _CHARGE_LOCK_NAMESPACE, "charge": charge_id},
            )
        )
        try:
            yield held
        finally:
            if held:
                await autocommit.execute(
                    text("SELECT pg_advisory_unlock(:namespace, :charge)"),
                    {"namespace": _CHARGE_LOCK_NAMESPACE, "charge": charge_id},
                )


async def get_charge(session: AsyncSession, charge_id: int) -> OverageCharge | None:
    """The charge as it stands (unlocked: the biller holds the charge's advisory lock, and
    the row is locked again where it is completed)."""
    return await session.get(OverageCharge, charge_id)


async def pending_charge_ids(session: AsyncSession, *, subscription_id: int) -> Sequence[int]:
    """The subscription's charges still `pending`, oldest first (what an event just closed,
    billed right after its commit)."""
    return (
        await session.scalars(
            select(OverageCharge.id)
            .where(
                OverageCharge.subscription_id == subscription_id,
                OverageCharge.status == "pending",
            )
            .order_by(OverageCharge.id)
        )
    ).all()


async def set_one_off_invoice(
    session: AsyncSession, *, charge_id: int, invoice_id: str, replacing: str | None
) -> str | None:
    """Aim the charge at its one-off invoice unless another run aimed it elsewhere first
    (its invoice is no longer `replacing`); returns the invoice the charge names now."""
    await session.execute(
        update(OverageCharge)
        .where(
            OverageCharge.id == charge_id,
            OverageCharge.stripe_invoice_id.is_not_distinct_from(replacing),
        )
        .values(stripe_invoice_id=invoice_id)
    )
    stored: str | None = await session.scalar(
        select(OverageCharge.stripe_invoice_id).where(OverageCharge.id == charge_id)
    )
    return stored


async def lock_charge(session: AsyncSession, charge_id: int) -> OverageCharge:
    """The charge, locked for the rest of the transaction: it is completed exactly once,
    whichever run gets there first."""
    charge = await session.scalar(
        select(OverageCharge).where(OverageCharge.id == charge_id).with_for_update()
    )
    assert charge is not None
    return charge


def complete_charge(
    charge: OverageCharge,
    *,
    status: str,
    stripe_invoice_id: str | None,
    item_ids: dict[str, str],
    invoiced_at: datetime,
) -> None:
    """Record where a locked charge's items are on Stripe (by line); written at the commit."""
    charge.status = status
    charge.stripe_invoice_id = stripe_invoice_id
    charge.stripe_invoice_item_ids = json.dumps(item_ids, sort_keys=True)
    charge.invoiced_at = invoiced_at


# --- following the invoices ------------------------------------------------------------------


async def customers_charge_ids(
    session: AsyncSession, *, charge_ids: set[int], customer_id: int
) -> set[int]:
    """Those of `charge_ids` that are the customer's. Joins `subscriptions` read-only (a
    charge names its subscription, the subscription its customer): one indexed statement
    for each invoice event."""
    if not charge_ids:
        return set()
    customers_charges = select(OverageCharge.id).where(
        OverageCharge.id.in_(charge_ids),
        OverageCharge.subscription_id.in_(
            select(Subscription.id).where(Subscription.customer_id == customer_id)
        ),
    )
    return set((await session.scalars(customers_charges)).all())


async def charges_waiting_for_next_invoice(
    session: AsyncSession, *, subscription_id: int
) -> Sequence[OverageCharge]:
    """The subscription's charges whose items wait, pending, for its next invoice."""
    return (
        await session.scalars(
            select(OverageCharge).where(
                OverageCharge.subscription_id == subscription_id,
                OverageCharge.status == "pending_next_invoice",
            )
        )
    ).all()


async def link_charges_to_invoice(
    session: AsyncSession, *, charge_ids: set[int], invoice_id: str, now: datetime
) -> None:
    """Charges whose pending items waited for the next invoice are `invoiced` on this one."""
    await session.execute(
        update(OverageCharge)
        .where(OverageCharge.id.in_(charge_ids), OverageCharge.status == "pending_next_invoice")
        .values(
            status="invoiced",
            stripe_invoice_id=invoice_id,
            invoiced_at=func.coalesce(OverageCharge.invoiced_at, now),
        )
    )


async def charge_ids_on_invoice(
    session: AsyncSession,
    *,
    invoice_id: str,
    charge_ids: set[int],
    subscription_id: int | None,
) -> Sequence[int]:
    """The charges billed on the invoice among `charge_ids` and the subscription's charges.

    By indexed columns (the subscription's charges, or those the invoice names), never a
    scan of every charge for each invoice event."""
    ours: ColumnElement[bool] = OverageCharge.id.in_(charge_ids)
    if subscription_id is not None:
        ours = or_(ours, OverageCharge.subscription_id == subscription_id)
    return (
        await session.scalars(
            select(OverageCharge.id).where(OverageCharge.stripe_invoice_id == invoice_id, ours)
        )
    ).all()


async def list_charges(session: AsyncSession, charge_ids: Sequence[int]) -> Sequence[OverageCharge]:
    """Overage charges by id (what an invoice's overage lines were computed from)."""
    if not charge_ids:
        return []
    return (
        await session.scalars(select(OverageCharge).where(OverageCharge.id.in_(charge_ids)))
    ).all()
