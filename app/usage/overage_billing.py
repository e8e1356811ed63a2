"""Overage billing: usage periods closed into overage charges, and the charges put on Stripe.

Two steps, because a webhook handler runs in a transaction and must not call Stripe, and no
transaction is held open across a Stripe call (STYLE rule 2):

1. **Close** (database only, in the caller's transaction). The period's totals row is locked,
   its overage computed (`app.usage.overage`), an `OverageCharge` row inserted (unique per
   subscription, period and sequence, `ON CONFLICT DO NOTHING`) and the period marked billed
   (`overage_billed_at`). The row is the truth: once it is committed the charge is owed, and
   step 2 runs until it is done. Who closes what:
   - `invoice.created` of a subscription invoice that starts a new billing period
     (`subscription_cycle`, or `subscription_update` when a change restarts the cycle): the
     periods before that start. The charge names that invoice: Stripe leaves a renewal a
     draft for about an hour, and an item created without `invoice=` would wait for the
     *next* invoice, a period late.
   - `customer.subscription.deleted` (an immediate cancel sends it too): every period not
     billed yet. There is no next invoice, so these go on a one-off invoice.
   - `close_ended_usage_periods` (cron): a yearly subscription's monthly periods once ended
     (its renewal comes once a year), and any period nobody closed a day after it ended (an
     event never delivered): billed with the next invoice.
   - `bill_overage_adjustments` (cron): records that arrived after their period was billed
     become an adjustment charge (sequence 1, 2, ...), billed with the next invoice.
2. **Bill** (`bill_charge`, after the commit; Stripe only, then a short transaction). Right
   after the event's transaction (`bill_after_event`, called by webhook processing), and by
   the `sweep_overage_charges` cron for whatever is still `pending`. Where a charge goes:
   - it names an invoice that is still a draft: items with `invoice=` on it → `invoiced`;
   - that invoice is no longer a draft (finalized before we got there): pending items that
     Stripe puts on the subscription's next invoice → `pending_next_invoice`;
   - it names no invoice and the subscription lives: pending items likewise (a yearly
     subscription has `pending_invoice_item_interval` = month, so that is next month);
   - the subscription has ended: a one-off invoice (ours, marked `billing_type=overage`,
     taking none of the customer's other pending items), its items, then finalized so
     Stripe charges the default card → `invoiced`. Items left pending when a subscription
     ends stay where they are: Stripe still charges a canceled subscription's pending items
     at the end of its period.
   Each item's idempotency key is `overage:{charge id}:{line}` (`...:next` for a pending
   item, whose parameters differ). Stripe forgets keys after 24 hours but retries webhooks
   for three days, so before creating anything the charge's items already on Stripe are
   looked up by their metadata (`overage_charge_id`): a retry a week later creates nothing
   twice. Once billed, the charge gets its billing-history row (`overage`, one per charge).
"""

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from arq.connections import ArqRedis
from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, and_, exists, func, or_, select, text, true, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.models import (
    BillingHistory,
    BillingHistoryArchive,
    Customer,
    OperatorAlert,
    OverageCharge,
    Subscription,
    UsagePeriodTotals,
    UsageRecord,
)
from app.plans import repository as plans_repository
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import expandable_id, from_timestamp, nested
from app.subscriptions import repository as subscriptions_repository
from app.usage.overage import (
    OverageAmounts,
    OverageTerms,
    adjustment,
    began_in_trial,
    compute_overage,
    overage_terms,
    sum_charged,
)

logger = structlog.get_logger(__name__)

# Invoices that start a new billing period, and so close the usage period before it.
CLOSING_BILLING_REASONS = ("subscription_cycle", "subscription_update")
ENDED_STATUSES = ("canceled", "incomplete_expired")
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
# A charge's items are looked for among the customer's items created since this long before
# the charge (clocks differ; the list stays short).
ITEM_LOOKBACK = timedelta(days=1)
BILL_JOB = "bill_overage_charge"


# --- step 1: closing periods (in the caller's transaction) ---------------------------


async def _terms(session: AsyncSession, subscription: Subscription) -> OverageTerms:
    """The plan and add-ons the subscription holds now: at a close, the ones in force when
    the period closes."""
    plan = await plans_repository.get_plan(session, subscription.plan_id)
    assert plan is not None
    lines = await subscriptions_repository.list_add_ons(session, subscription.id)
    return overage_terms(plan, [(add_on, line.quantity) for line, add_on in lines])


async def _charged(
    session: AsyncSession, subscription_id: int, period_start: datetime, currency: str
) -> tuple[OverageAmounts, int]:
    """What the period's charges add up to, and the next free sequence (1 at least)."""
    charges = (
        await session.scalars(
            select(OverageCharge).where(
                OverageCharge.subscription_id == subscription_id,
                OverageCharge.period_start == period_start,
            )
        )
    ).all()
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


async def _insert_charge(
    session: AsyncSession,
    *,
    totals: UsagePeriodTotals,
    sequence: int,
    amounts: OverageAmounts,
    invoice_id: str | None,
    now: datetime,
) -> int | None:
    # ON CONFLICT DO NOTHING: the unique (subscription, period, sequence) is the referee when
    # two closes meet (three deliveries of one invoice.created make one row).
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
        )
        .on_conflict_do_nothing(index_elements=["subscription_id", "period_start", "sequence"])
        .returning(OverageCharge.id)
    )
    return charge_id


async def _close(
    session: AsyncSession,
    subscription: Subscription,
    which: ColumnElement[bool],
    *,
    invoice_id: str | None,
    now: datetime,
) -> list[int]:
    """Close the subscription's unbilled periods matching `which`; returns new charge ids."""
    rows = (
        await session.scalars(
            select(UsagePeriodTotals)
            .where(
                UsagePeriodTotals.subscription_id == subscription.id,
                UsagePeriodTotals.overage_billed_at.is_(None),
                which,
            )
            .order_by(UsagePeriodTotals.period_start)
            # Locked: a record counted meanwhile waits, then finds the period billed and
            # becomes an adjustment; a second close finds it billed and does nothing.
            .with_for_update()
        )
    ).all()
    if not rows:
        return []
    terms = await _terms(session, subscription)
    created = []
    for totals in rows:
        amounts = compute_overage(
            terms,
            minutes_used=Decimal(totals.minutes_used),
            peak_agents=totals.peak_agents,
            in_trial=began_in_trial(totals.period_start, subscription.trial_end),
        )
        # A period with nothing over is billed too, as nothing: no row, no Stripe call.
        if not amounts.bills_nothing:
            charge_id = await _insert_charge(
                session, totals=totals, sequence=0, amounts=amounts, invoice_id=invoice_id, now=now
            )
            if charge_id is not None:
                created.append(charge_id)
        totals.overage_billed_at = now
    await session.flush()
    return created


def _period_boundary(invoice: dict[str, Any]) -> datetime | None:
    """Where the billing period this invoice opens starts: the earliest start of its plan and
    add-on lines that are not prorations. A proration-only invoice (an upgrade mid-period)
    opens no period and closes none."""
    starts = []
    for line in nested(invoice, "lines", "data") or []:
        details = nested(line, "parent", "subscription_item_details")
        start = nested(line, "period", "start")
        if isinstance(details, dict) and not details.get("proration") and isinstance(start, int):
            starts.append(start)
    if not starts and invoice.get("billing_reason") == "subscription_cycle":
        # Lines cut to the payload's first page: a renewal's own period ends where the next
        # one starts.
        end = invoice.get("period_end")
        starts = [end] if isinstance(end, int) else []
    return _timestamp(min(starts)) if starts else None


async def close_periods_for_invoice(
    session: AsyncSession, *, subscription: Subscription, invoice: dict[str, Any], now: datetime
) -> list[int]:
    """`invoice.created` (handler): close the usage periods before the period this invoice
    opens, their charges aimed at this invoice while it is a draft."""
    if invoice.get("billing_reason") not in CLOSING_BILLING_REASONS:
        return []
    boundary = _period_boundary(invoice)
    if boundary is None:
        return []
    # Already finalized (an update invoiced at once): nothing can be added to it; the charge
    # names no invoice and is billed with the next one.
    target = str(invoice["id"]) if invoice.get("status") == "draft" else None
    return await _close(
        session,
        subscription,
        UsagePeriodTotals.period_start < boundary,
        invoice_id=target,
        now=now,
    )


async def close_periods_on_cancel(
    session: AsyncSession, *, subscription: Subscription, now: datetime
) -> list[int]:
    """`customer.subscription.deleted` (handler): bill every period not billed yet, the last
    one cut short included (its allowance is not prorated: the customer had the plan's
    monthly allowance while the period ran)."""
    if subscription.status not in ENDED_STATUSES:
        return []
    return await _close(session, subscription, true(), invoice_id=None, now=now)


# --- billing history follows the invoice ---------------------------------------------


async def record_invoice_overage(
    session: AsyncSession, *, invoice: dict[str, Any], subscription_id: int | None, now: datetime
) -> None:
    """Keep the `overage` history rows of an invoice's charges in step with the invoice
    (handler, on every invoice event): a pending item that landed on this invoice links its
    charge to it, and each row takes the invoice's status, number and link."""
    invoice_id = str(invoice["id"])
    named = {
        charge_id
        for metadata in [invoice.get("metadata") or {}]
        + [line.get("metadata") or {} for line in nested(invoice, "lines", "data") or []]
        if isinstance(charge_id := metadata.get("overage_charge_id"), str) and charge_id.isdigit()
    }
    charge_ids = {int(charge_id) for charge_id in named}
    if charge_ids:
        await session.execute(
            update(OverageCharge)
            .where(OverageCharge.id.in_(charge_ids), OverageCharge.status == "pending_next_invoice")
            .values(
                status="invoiced",
                stripe_invoice_id=invoice_id,
                invoiced_at=func.coalesce(OverageCharge.invoiced_at, now),
            )
        )
    # By indexed columns (the subscription's charges, or those the invoice names), never a
    # scan of every charge for each invoice event.
    ours: ColumnElement[bool] = OverageCharge.id.in_(charge_ids)
    if subscription_id is not None:
        ours = or_(ours, OverageCharge.subscription_id == subscription_id)
    elif not charge_ids:
        return
    # The hot table, then the archive (a replayed event of an old, settled invoice): in this
    # order, a row moved by an archive batch meanwhile is found by the second statement.
    for table in (BillingHistory, BillingHistoryArchive):
        await session.execute(
            update(table)
            .where(
                table.overage_charge_id.in_(
                    select(OverageCharge.id).where(
                        OverageCharge.stripe_invoice_id == invoice_id, ours
                    )
                )
            )
            .values(
                status=str(invoice.get("status") or "draft"),
                stripe_invoice_id=invoice_id,
                number=invoice.get("number"),
                hosted_invoice_url=invoice.get("hosted_invoice_url"),
                invoice_pdf_url=invoice.get("invoice_pdf"),
                updated_at=func.now(),
            )
        )


# --- step 2: billing a charge on Stripe ------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Line:
    name: str
    amount: int
    description: str


@dataclass(frozen=True, slots=True)
class _Billable:
    charge: OverageCharge
    customer_id: int
    stripe_customer_id: str | None
    stripe_subscription_id: str | None
    subscription_ended: bool
    yearly: bool

    @property
    def title(self) -> str:
        return "Overage" if self.charge.sequence == 0 else "Overage adjustment (late usage)"

    @property
    def period(self) -> str:
        return f"{self.charge.period_start:%Y-%m-%d} to {self.charge.period_end:%Y-%m-%d}"

    @property
    def lines(self) -> list[_Line]:
        """The invoice items: minutes and agents, each as computed (no zero line)."""
        charge = self.charge
        minutes = f"{Decimal(charge.minutes_over).normalize():f}"
        candidates = [
            _Line(
                "minutes",
                charge.minutes_amount,
                f"{self.title}: {minutes} call minutes, {self.period}",
            ),
            _Line(
                "agents",
                charge.agents_amount,
                f"{self.title}: {charge.agents_over} agents, {self.period}",
            ),
        ]
        return [line for line in candidates if line.amount != 0]

    def metadata(self, line: str) -> dict[str, str]:
        return {
            "billing_type": "overage",
            "overage_charge_id": str(self.charge.id),
            "overage_line": line,
        }


async def _load_billable(
    sessionmaker: async_sessionmaker[AsyncSession], charge_id: int
) -> _Billable | None:
    async with sessionmaker() as session:
        row = (
            await session.execute(
                select(OverageCharge, Subscription, Customer)
                .join(Subscription, Subscription.id == OverageCharge.subscription_id)
                .join(Customer, Customer.id == Subscription.customer_id)
                .where(OverageCharge.id == charge_id)
            )
        ).first()
    if row is None:
        return None
    charge, subscription, customer = row
    return _Billable(
        charge=charge,
        customer_id=customer.id,
        stripe_customer_id=customer.stripe_customer_id,
        stripe_subscription_id=subscription.stripe_subscription_id,
        subscription_ended=subscription.status in ENDED_STATUSES,
        yearly=subscription.billing_cycle == "yearly",
    )


@dataclass(frozen=True, slots=True)
class _StripeItem:
    id: str
    # The invoice holding it; None while it is pending.
    invoice_id: str | None


async def _find_items(gateway: StripeGateway, billable: _Billable) -> dict[str, _StripeItem]:
    """The charge's items already on Stripe, by line, wherever they are (on an invoice or
    pending), found by the metadata we gave them: the customer's items created since shortly
    before the charge, one list, so no path creates a line another path already created."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    found = {}
    for item in await gateway.list_invoice_items(
        customer_id=billable.stripe_customer_id, created_from=charge.created_at - ITEM_LOOKBACK
    ):
        metadata = item.get("metadata") or {}
        if metadata.get("overage_charge_id") == str(charge.id) and metadata.get("overage_line"):
            found[str(metadata["overage_line"])] = _StripeItem(
                str(item["id"]), expandable_id(item.get("invoice"))
            )
    return found


class OverageNotBillable(Exception):
    """A charge that cannot be billed without an operator (left pending, alerted)."""


# Advisory-lock namespace of overage charges (pg_try_advisory_lock(namespace, charge id)).
_CHARGE_LOCK_NAMESPACE = 7_301


@asynccontextmanager
async def _charge_lock(
    sessionmaker: async_sessionmaker[AsyncSession], charge_id: int
) -> AsyncIterator[bool]:
    """One biller per charge at a time, across workers. A session-level advisory lock on an
    autocommit connection: it spans the Stripe calls without holding a transaction open.
    Without it, a run that found the invoice finalized could add the lines as pending items
    while another run had just added them to the draft: billed twice."""
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


async def bill_charge(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    charge_id: int,
) -> str:
    """Put one charge on Stripe (see the module's docstring); returns its status. Safe to
    run any number of times, concurrently too: one run at a time per charge (the others
    answer "busy" and the sweeper comes back), what exists on Stripe is looked up first,
    every write carries a key from the charge's id, and the row is completed only once."""
    async with _charge_lock(sessionmaker, charge_id) as held:
        if not held:
            return "busy"
        return await _bill_charge_locked(
            sessionmaker=sessionmaker, gateway=gateway, clock=clock, charge_id=charge_id
        )


async def _bill_charge_locked(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    charge_id: int,
) -> str:
    billable = await _load_billable(sessionmaker, charge_id)
    if billable is None or billable.charge.status != "pending":
        return billable.charge.status if billable else "missing"
    if billable.stripe_customer_id is None:
        raise OverageNotBillable(f"charge {charge_id}: the customer has no Stripe customer")
    found = await _find_items(gateway, billable)
    target = billable.charge.stripe_invoice_id
    if target is not None:
        invoice = await _complete_on_invoice(gateway, billable, target, found)
        if invoice is not None:
            return await _settle(sessionmaker, gateway, billable, found, invoice, clock.now())
        # Finalized before the items got on it: they go where a charge without an invoice goes.
    if billable.subscription_ended and any(line.name not in found for line in billable.lines):
        target = await _one_off_invoice(sessionmaker, gateway, billable, replacing=target)
        invoice = await _complete_on_invoice(gateway, billable, target, found)
        if invoice is None:
            raise OverageNotBillable(
                f"charge {charge_id}: its invoice {target} was finalized without its items"
            )
        return await _settle(sessionmaker, gateway, billable, found, invoice, clock.now())
    await _add_pending_items(gateway, billable, found)
    if billable.yearly and billable.stripe_subscription_id is not None:
        await _ensure_monthly_pending_invoicing(gateway, billable, clock.now())
    return await _settle(sessionmaker, gateway, billable, found, None, clock.now())


async def _complete_on_invoice(
    gateway: StripeGateway, billable: _Billable, invoice_id: str, found: dict[str, _StripeItem]
) -> dict[str, Any] | None:
    """Put the charge's missing lines on this invoice while it is a draft (and finalize it
    when it is our one-off invoice); returns the invoice, or None when lines are missing and
    it no longer takes items."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    invoice = await gateway.retrieve_object("invoice", invoice_id)
    if invoice is None:
        return None
    missing = [line for line in billable.lines if line.name not in found]
    is_draft = invoice.get("status") == "draft"
    if missing and not is_draft:
        return None
    for line in missing:
        item_id = await gateway.create_invoice_item(
            customer_id=billable.stripe_customer_id,
            amount=line.amount,
            currency=charge.currency,
            description=line.description,
            metadata=billable.metadata(line.name),
            period=(charge.period_start, charge.period_end),
            invoice_id=invoice_id,
            subscription_id=None,
            idempotency_key=f"overage:{charge.id}:{line.name}",
        )
        found[line.name] = _StripeItem(item_id, invoice_id)
    if is_draft and (invoice.get("metadata") or {}).get("overage_charge_id") == str(charge.id):
        # Our one-off invoice: finalized once it holds the items, so Stripe charges the
        # customer's default card.
        status = await gateway.finalize_invoice(
            invoice_id=invoice_id, idempotency_key=f"overage-finalize:{charge.id}"
        )
        invoice = {**invoice, "status": status}
    return invoice


async def _add_pending_items(
    gateway: StripeGateway, billable: _Billable, found: dict[str, _StripeItem]
) -> None:
    """The charge's missing lines as pending items of the subscription: Stripe puts them on
    its next invoice. Keyed `...:next`: their parameters differ from an `invoice=` attempt's
    under the plain key, and Stripe refuses a key reused with other parameters."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    for line in billable.lines:
        if line.name in found:
            continue
        item_id = await gateway.create_invoice_item(
            customer_id=billable.stripe_customer_id,
            amount=line.amount,
            currency=charge.currency,
            description=line.description,
            metadata=billable.metadata(line.name),
            period=(charge.period_start, charge.period_end),
            invoice_id=None,
            subscription_id=billable.stripe_subscription_id,
            idempotency_key=f"overage:{charge.id}:{line.name}:next",
        )
        found[line.name] = _StripeItem(item_id, None)


async def _settle(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    billable: _Billable,
    found: dict[str, _StripeItem],
    known: dict[str, Any] | None,
    now: datetime,
) -> str:
    """Complete the row from where its items are: all on one invoice → `invoiced` (with that
    invoice's status in the history row); otherwise they wait as pending items for the next
    invoice → `pending_next_invoice`, linked when that invoice's events arrive."""
    holders = {item.invoice_id for item in found.values()}
    holder = holders.pop() if len(holders) == 1 else None
    invoice: dict[str, Any] | None = None
    if holder is not None:
        invoice = (
            known
            if known is not None and known.get("id") == holder
            else await gateway.retrieve_object("invoice", holder)
        ) or {"id": holder}
    return await _mark_billed(
        sessionmaker,
        billable,
        "invoiced" if invoice is not None else "pending_next_invoice",
        invoice,
        {line: item.id for line, item in found.items()},
        now,
    )


async def _one_off_invoice(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    billable: _Billable,
    *,
    replacing: str | None,
) -> str:
    """The draft invoice of an ended subscription's charge: created once (its key is the
    charge's), its id written on the charge before anything is added to it, so a retry
    finds it there."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    created = await gateway.create_invoice(
        customer_id=billable.stripe_customer_id,
        description=f"{billable.title}, {billable.period}",
        # `billing_type=overage` makes its billing-history row an `overage` one.
        metadata={"billing_type": "overage", "overage_charge_id": str(charge.id)},
        idempotency_key=f"overage-invoice:{charge.id}",
    )
    async with sessionmaker.begin() as session:
        await session.execute(
            update(OverageCharge)
            .where(
                OverageCharge.id == charge.id,
                OverageCharge.stripe_invoice_id.is_not_distinct_from(replacing),
            )
            .values(stripe_invoice_id=created)
        )
        stored = await session.scalar(
            select(OverageCharge.stripe_invoice_id).where(OverageCharge.id == charge.id)
        )
    return stored or created


async def _ensure_monthly_pending_invoicing(
    gateway: StripeGateway, billable: _Billable, now: datetime
) -> None:
    """A yearly subscription created before this service set `pending_invoice_item_interval`
    at creation, or switched to yearly later, gets it here, so its pending items are invoiced
    next month rather than at the yearly renewal."""
    assert billable.stripe_subscription_id is not None
    subscription = await gateway.retrieve_object("subscription", billable.stripe_subscription_id)
    if subscription is None or subscription.get("pending_invoice_item_interval"):
        return
    await gateway.update_subscription(
        subscription_id=billable.stripe_subscription_id,
        params={"pending_invoice_item_interval": {"interval": "month"}},
        # Per day: the same fix repeated later (after a switch away and back) is a new request.
        idempotency_key=f"pending-item-interval:{billable.charge.subscription_id}:{now:%Y%m%d}",
    )


async def _mark_billed(
    sessionmaker: async_sessionmaker[AsyncSession],
    billable: _Billable,
    status: str,
    invoice: dict[str, Any] | None,
    items: dict[str, str],
    now: datetime,
) -> str:
    charge = billable.charge
    async with sessionmaker.begin() as session:
        locked = await session.scalar(
            select(OverageCharge).where(OverageCharge.id == charge.id).with_for_update()
        )
        assert locked is not None
        if locked.status != "pending":
            return locked.status
        locked.status = status
        locked.stripe_invoice_id = str(invoice["id"]) if invoice else None
        locked.stripe_invoice_item_ids = json.dumps(items, sort_keys=True)
        locked.invoiced_at = now
        await session.execute(
            insert(BillingHistory)
            .values(
                customer_id=billable.customer_id,
                subscription_id=charge.subscription_id,
                type="overage",
                # The invoice's status while on one; `pending` until the next invoice takes it.
                status=str(invoice.get("status")) if invoice else "pending",
                amount=charge.amount,
                currency=charge.currency,
                description=f"{billable.title}, {billable.period}",
                billing_reason=None,
                period_start=charge.period_start,
                period_end=charge.period_end,
                stripe_invoice_id=locked.stripe_invoice_id,
                overage_charge_id=charge.id,
                number=invoice.get("number") if invoice else None,
                hosted_invoice_url=invoice.get("hosted_invoice_url") if invoice else None,
                invoice_pdf_url=invoice.get("invoice_pdf") if invoice else None,
                occurred_at=now,
            )
            .on_conflict_do_nothing(index_elements=["overage_charge_id"])
        )
    logger.info(
        "overage_charge_billed",
        charge_id=charge.id,
        status=status,
        amount=charge.amount,
        invoice=invoice.get("id") if invoice else None,
    )
    return status


async def bill_charges(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    charge_ids: Sequence[int],
) -> None:
    """Best effort, right after the commit that created the charges: a failure is logged and
    the charge stays pending for the sweeper."""
    for charge_id in charge_ids:
        try:
            await bill_charge(
                sessionmaker=sessionmaker, gateway=gateway, clock=clock, charge_id=charge_id
            )
        except Exception as error:
            logger.warning("overage_billing_deferred", charge_id=charge_id, error=repr(error))


async def bill_after_event(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    event_type: str,
    obj: dict[str, Any],
) -> None:
    """Webhook processing calls this after an event's transaction committed: bill what the
    event closed (its pending charges) at once, while the renewal is still a draft."""
    if event_type == "invoice.created":
        stripe_subscription_id = expandable_id(
            nested(obj, "parent", "subscription_details", "subscription")
        )
    elif event_type == "customer.subscription.deleted":
        stripe_subscription_id = expandable_id(obj.get("id"))
    else:
        return
    if stripe_subscription_id is None:
        return
    async with sessionmaker() as session:
        charge_ids = (
            await session.scalars(
                select(OverageCharge.id)
                .join(Subscription, Subscription.id == OverageCharge.subscription_id)
                .where(
                    Subscription.stripe_subscription_id == stripe_subscription_id,
                    OverageCharge.status == "pending",
                )
                .order_by(OverageCharge.id)
            )
        ).all()
    await bill_charges(
        sessionmaker=sessionmaker, gateway=gateway, clock=clock, charge_ids=charge_ids
    )


# --- jobs ------------------------------------------------------------------------------


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
            created += await _close(session, subscription, which, invoice_id=None, now=now)
    await bill_charges(
        sessionmaker=sessionmaker, gateway=ctx["stripe_gateway"], clock=clock, charge_ids=created
    )
    return len(created)


async def bill_overage_adjustments(ctx: dict[str, Any]) -> int:
    """Cron: for each billed period that received records after it was billed, charge the
    difference between what its totals now imply and what was charged (sequence 1, 2, ...),
    with the next invoice. Returns adjustment charges created.

    The terms are the subscription's plan and add-ons when the adjustment is computed: the
    terms that closed the period are not stored (`overage_charges` has no column for them),
    so a plan change between a close and a late record re-prices that period's overage in
    the adjustment."""
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
            created += await _adjust(session, subscription, totals_ids, now)
    await bill_charges(
        sessionmaker=sessionmaker, gateway=ctx["stripe_gateway"], clock=clock, charge_ids=created
    )
    return len(created)


async def _adjust(
    session: AsyncSession, subscription: Subscription, totals_ids: list[int], now: datetime
) -> list[int]:
    rows = (
        await session.scalars(
            select(UsagePeriodTotals)
            .where(UsagePeriodTotals.id.in_(totals_ids))
            .order_by(UsagePeriodTotals.period_start)
            .with_for_update()
        )
    ).all()
    terms = await _terms(session, subscription)
    created = []
    for totals in rows:
        implied = compute_overage(
            terms,
            minutes_used=Decimal(totals.minutes_used),
            peak_agents=totals.peak_agents,
            in_trial=began_in_trial(totals.period_start, subscription.trial_end),
        )
        charged, sequence = await _charged(
            session, subscription.id, totals.period_start, terms.currency
        )
        difference = adjustment(implied, charged)
        if not difference.bills_nothing:
            charge_id = await _insert_charge(
                session,
                totals=totals,
                sequence=sequence,
                amounts=difference,
                invoice_id=None,
                now=now,
            )
            if charge_id is not None:
                created.append(charge_id)
        # Looked at now: only records written after this count as late next time.
        totals.overage_billed_at = now
    await session.flush()
    return created


# --- small readers ---------------------------------------------------------------------


def _timestamp(value: int) -> datetime:
    moment = from_timestamp(value)
    assert moment is not None
    return moment
