"""Step 1: usage periods closed into overage charges (database only, in the caller's
transaction). See the package docstring for who closes what.
"""

from datetime import datetime
from decimal import Decimal

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Subscription, UsagePeriodTotals
from app.models.subscription import ENDED_STATUSES
from app.plans import service as plans_service
from app.stripe_gateway.types import InvoiceState
from app.subscriptions import service as subscriptions_service
from app.usage.overage import (
    AddOnChange,
    OverageAmounts,
    OverageTerms,
    adjustment,
    began_in_trial,
    compute_overage,
    overage_terms_for_period,
    sum_charged,
)
from app.usage.overage_billing import repository

logger = structlog.get_logger(__name__)

CLOSING_BILLING_REASONS = ("subscription_cycle", "subscription_update")


async def _terms_at(
    session: AsyncSession, subscription: Subscription, start: datetime, moment: datetime
) -> OverageTerms:
    """The terms of the period from `start` to `moment`, as in force then, whenever the
    close runs: the plan from the plan history just before `moment` (a downgrade applied at
    the renewal that closes the period is not yet in force for it; an upgrade made during
    the period is, for all of it), and the add-ons from the add-on history (their minutes
    for the share of the period they were held, their agents if held at its end:
    `app.usage.overage`)."""
    plan_id = await subscriptions_service.plan_in_force_at(
        session, subscription=subscription, moment=moment
    )
    plan = await plans_service.find_plan(session, plan_id)
    assert plan is not None
    current, changes, add_ons = await subscriptions_service.add_on_history(session, subscription.id)
    history = [
        AddOnChange(c.effective_at, c.add_on_id, c.from_quantity, c.to_quantity) for c in changes
    ]
    return overage_terms_for_period(plan, add_ons, current, history, start, moment)


def _closing_terms(totals: UsagePeriodTotals) -> tuple[OverageTerms, bool] | None:
    """The terms a period was closed with, as stored at the close."""
    if (
        totals.closed_included_minutes is None
        or totals.closed_agent_limit is None
        or totals.closed_rate_per_minute is None
        or totals.closed_rate_per_agent is None
        or totals.closed_currency is None
    ):
        return None
    terms = OverageTerms(
        included_minutes=totals.closed_included_minutes,
        agent_limit=totals.closed_agent_limit,
        rate_per_minute=Decimal(totals.closed_rate_per_minute),
        rate_per_agent=Decimal(totals.closed_rate_per_agent),
        currency=totals.closed_currency,
    )
    return terms, bool(totals.closed_in_trial)


async def _charged(
    session: AsyncSession, subscription_id: int, period_start: datetime, currency: str
) -> tuple[OverageAmounts, int]:
    """What the period's charges add up to, and the next free sequence (1 at least)."""
    charges = await repository.period_charges(
        session, subscription_id=subscription_id, period_start=period_start
    )
    total = sum_charged(
        (
            OverageAmounts(
                Decimal(c.minutes_over), c.agents_over, c.minutes_amount, c.agents_amount, currency
            )
            for c in charges
        ),
        currency,
    )
    return total, max((c.sequence for c in charges), default=0) + 1


async def close_periods(
    session: AsyncSession,
    subscription: Subscription,
    *,
    started_before: datetime | None = None,
    ended_by: datetime | None = None,
    invoice_id: str | None,
    now: datetime,
    boundary: datetime | None = None,
) -> list[int]:
    """Close the subscription's unbilled periods that started before `started_before` and
    ended by `ended_by` (None: no bound; neither: all of them); returns new charge ids.

    Each period is priced with the terms in force at its end (or at `boundary`, where the
    billing period that closes it ended earlier), and those terms are kept on the period
    for the adjustments of records that arrive later."""
    rows = await repository.lock_unbilled_periods(
        session, subscription_id=subscription.id, started_before=started_before, ended_by=ended_by
    )
    created = []
    for totals in rows:
        closes_at = min(totals.period_end, boundary) if boundary else totals.period_end
        if closes_at < totals.period_end:
            # A stub period: the change that moved the anchor cut it short (app.core.periods);
            # records placed after the change already see this end.
            totals.period_end = closes_at
        terms = await _terms_at(session, subscription, totals.period_start, closes_at)
        in_trial = began_in_trial(totals.period_start, subscription.trial_end)
        repository.keep_closing_terms(totals, terms, in_trial)
        amounts = compute_overage(
            terms,
            minutes_used=Decimal(totals.minutes_used),
            peak_agents=totals.peak_agents,
            in_trial=in_trial,
        )
        # A period with nothing over is billed too, as nothing: no row, no Stripe call.
        if not amounts.bills_nothing:
            charge_id = await repository.insert_charge(
                session,
                totals=totals,
                sequence=0,
                amounts=amounts,
                terms=terms,
                invoice_id=invoice_id,
                now=now,
            )
            if charge_id is not None:
                created.append(charge_id)
        repository.mark_period_billed(totals, now)
    await session.flush()
    return created


def _period_boundary(invoice: InvoiceState) -> datetime | None:
    """Where the billing period this invoice opens starts: the earliest start of its plan and
    add-on lines that are not prorations. A proration-only invoice (an upgrade mid-period)
    opens no period and closes none."""
    starts = [
        line.period_start
        for line in invoice.lines
        if line.for_subscription_item and not line.proration and line.period_start is not None
    ]
    if not starts and invoice.billing_reason == "subscription_cycle":
        # Lines cut to the payload's first page: a renewal's own period ends where the next
        # one starts.
        starts = [invoice.period_end] if invoice.period_end is not None else []
    return min(starts) if starts else None


def _change_applied(subscription: Subscription, invoice: InvoiceState, boundary: datetime) -> bool:
    """Whether the change this update invoice bills took effect. Our changes are sent with
    `payment_behavior=pending_if_incomplete`: Stripe invoices the new price at once but
    applies the change only when that invoice is paid; declined or waiting for 3-D Secure,
    it stays in the subscription's `pending_update` and the current period runs on. So the
    invoice closes periods only once it is paid, or once the subscription (as we hold it,
    from Stripe's answer to the change) has its new period starting at the boundary. The
    update invoice's `invoice.paid` asks again, for a change applied after 3-D Secure."""
    if invoice.status == "paid":
        return True
    start = subscription.current_period_start
    return start is not None and start >= boundary


async def close_periods_for_invoice(
    session: AsyncSession, *, subscription: Subscription, invoice: InvoiceState, now: datetime
) -> list[int]:
    """`invoice.created` (handler): close the usage periods before the period this invoice
    opens, their charges aimed at this invoice while it is a draft. `invoice.paid` asks
    again (a change applied once its invoice was paid); what is closed already stays so."""
    if invoice.billing_reason not in CLOSING_BILLING_REASONS:
        return []
    boundary = _period_boundary(invoice)
    if boundary is None:
        return []
    if invoice.billing_reason == "subscription_update" and not _change_applied(
        subscription, invoice, boundary
    ):
        return []
    # Already finalized (an update invoiced at once): nothing can be added to it; the charge
    # names no invoice and is billed with the next one.
    target = invoice.id if invoice.status == "draft" else None
    return await close_periods(
        session,
        subscription,
        started_before=boundary,
        invoice_id=target,
        now=now,
        boundary=boundary,
    )


async def close_periods_on_cancel(
    session: AsyncSession, *, subscription: Subscription, now: datetime
) -> list[int]:
    """`customer.subscription.deleted` (handler): bill every period not billed yet, the last
    one cut short included (its allowance is not prorated: the customer had the plan's
    monthly allowance while the period ran)."""
    if subscription.status not in ENDED_STATUSES:
        return []
    return await close_periods(session, subscription, invoice_id=None, now=now)


async def adjust_billed_periods(
    session: AsyncSession, subscription: Subscription, totals_ids: list[int], now: datetime
) -> list[int]:
    """Charge what billed periods now owe beyond what was charged (late records), priced
    with the terms each period was closed with; returns the adjustment charges created."""
    rows = await repository.lock_periods(session, totals_ids)
    created = []
    for totals in rows:
        closing = _closing_terms(totals)
        if closing is None:
            # Closed before closing terms were kept: the plan history still says which plan
            # was in force at the period's end.
            terms = await _terms_at(session, subscription, totals.period_start, totals.period_end)
            in_trial = began_in_trial(totals.period_start, subscription.trial_end)
            repository.keep_closing_terms(totals, terms, in_trial)
        else:
            terms, in_trial = closing
        implied = compute_overage(
            terms,
            minutes_used=Decimal(totals.minutes_used),
            peak_agents=totals.peak_agents,
            in_trial=in_trial,
        )
        charged, sequence = await _charged(
            session, subscription.id, totals.period_start, terms.currency
        )
        difference = adjustment(implied, charged)
        if not difference.bills_nothing:
            charge_id = await repository.insert_charge(
                session,
                totals=totals,
                sequence=sequence,
                amounts=difference,
                terms=terms,
                invoice_id=None,
                now=now,
            )
            if charge_id is not None:
                created.append(charge_id)
        # Looked at now: only records written after this count as late next time.
        repository.mark_period_billed(totals, now)
    await session.flush()
    return created
