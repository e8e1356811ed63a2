"""Step 2: one overage charge put on Stripe (after the commit that created it; Stripe
only, then a short transaction). See the package docstring for where a charge goes.
"""

import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import structlog
from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.models import (
    BillingHistory,
    Customer,
    OverageCharge,
    Subscription,
)
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import InvoiceState
from app.usage.overage_billing.closing import ENDED_STATUSES
from app.usage.overage_billing.history import record_invoice_overage

logger = structlog.get_logger(__name__)

# A charge's items are looked for among the customer's items created since this long before
# the charge (clocks differ; the list stays short).
ITEM_LOOKBACK = timedelta(days=1)


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
        metadata = item.metadata
        if metadata.get("overage_charge_id") == str(charge.id) and metadata.get("overage_line"):
            found[metadata["overage_line"]] = _StripeItem(item.id, item.invoice_id)
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
) -> InvoiceState | None:
    """Put the charge's missing lines on this invoice while it is a draft (and finalize it
    when it is our one-off invoice); returns the invoice, or None when lines are missing and
    it no longer takes items."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    invoice = await gateway.find_invoice(invoice_id)
    if invoice is None:
        return None
    missing = [line for line in billable.lines if line.name not in found]
    is_draft = invoice.status == "draft"
    if missing and not is_draft:
        return None
    for line in missing:
        found[line.name] = await _create_item(
            gateway, billable, line, invoice_id=invoice_id, key=f"overage:{charge.id}:{line.name}"
        )
    if is_draft and invoice.metadata.get("overage_charge_id") == str(charge.id):
        # Our one-off invoice: finalized once it holds the items, so Stripe charges the
        # customer's default card.
        status = await gateway.finalize_invoice(
            invoice_id=invoice_id, idempotency_key=f"overage-finalize:{charge.id}"
        )
        invoice = dataclasses.replace(invoice, status=status)
    return invoice


async def _add_pending_items(
    gateway: StripeGateway, billable: _Billable, found: dict[str, _StripeItem]
) -> None:
    """The charge's missing lines as pending items of the subscription: Stripe puts them on
    its next invoice. Keyed `...:next`: their parameters differ from an `invoice=` attempt's
    under the plain key, and Stripe refuses a key reused with other parameters."""
    for line in billable.lines:
        if line.name not in found:
            found[line.name] = await _create_item(
                gateway,
                billable,
                line,
                invoice_id=None,
                key=f"overage:{billable.charge.id}:{line.name}:next",
            )


async def _create_item(
    gateway: StripeGateway, billable: _Billable, line: _Line, *, invoice_id: str | None, key: str
) -> _StripeItem:
    """One line of the charge as a Stripe invoice item: on `invoice_id`, or, without one,
    pending on the subscription (Stripe puts it on the next invoice)."""
    assert billable.stripe_customer_id is not None
    charge = billable.charge
    item_id = await gateway.create_invoice_item(
        customer_id=billable.stripe_customer_id,
        amount=line.amount,
        currency=charge.currency,
        description=line.description,
        metadata=billable.metadata(line.name),
        period=(charge.period_start, charge.period_end),
        invoice_id=invoice_id,
        subscription_id=None if invoice_id else billable.stripe_subscription_id,
        idempotency_key=key,
    )
    return _StripeItem(item_id, invoice_id)


async def _settle(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    billable: _Billable,
    found: dict[str, _StripeItem],
    known: InvoiceState | None,
    now: datetime,
) -> str:
    """Complete the row from where its items are: all on one invoice → `invoiced` (with that
    invoice's status in the history row); otherwise they wait as pending items for the next
    invoice → `pending_next_invoice`, linked when that invoice's events arrive."""
    holders = {item.invoice_id for item in found.values()}
    holder = holders.pop() if len(holders) == 1 else None
    invoice: InvoiceState | None = None
    if holder is not None:
        invoice = (
            known
            if known is not None and known.id == holder
            else await gateway.find_invoice(holder)
        ) or InvoiceState(id=holder)
    status = await _mark_billed(
        sessionmaker,
        billable,
        "invoiced" if invoice is not None else "pending_next_invoice",
        invoice,
        {line: item.id for line, item in found.items()},
        now,
    )
    if holder is not None:
        await _catch_up_history_row(sessionmaker, gateway, billable, holder, now)
    return status


async def _catch_up_history_row(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    billable: _Billable,
    invoice_id: str,
    now: datetime,
) -> None:
    """Read the invoice again once the charge's history row exists, and bring the row up to
    it. An event of that invoice processed while the row did not exist yet (the invoice
    finalized or paid meanwhile) found nothing to update; without this the row would show
    the status it was billed with until the next event. Statuses only move forward, so a
    late, older event cannot undo this. Best effort: the invoice's next event does the same."""
    try:
        invoice = await gateway.find_invoice(invoice_id)
    except Exception as error:
        logger.warning("overage_history_catch_up_failed", invoice=invoice_id, error=repr(error))
        return
    if invoice is None:
        return
    async with sessionmaker.begin() as session:
        await record_invoice_overage(
            session,
            invoice=invoice,
            customer_id=billable.customer_id,
            subscription_id=billable.charge.subscription_id,
            now=now,
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
    subscription = await gateway.find_subscription(billable.stripe_subscription_id)
    if subscription is None or subscription.pending_invoice_item_interval:
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
    invoice: InvoiceState | None,
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
        locked.stripe_invoice_id = invoice.id if invoice else None
        locked.stripe_invoice_item_ids = json.dumps(items, sort_keys=True)
        locked.invoiced_at = now
        await session.execute(
            insert(BillingHistory)
            .values(
                customer_id=billable.customer_id,
                subscription_id=charge.subscription_id,
                type="overage",
                # The invoice's status while on one; `pending` until the next invoice takes it.
                status=str(invoice.status) if invoice else "pending",
                amount=charge.amount,
                currency=charge.currency,
                description=f"{billable.title}, {billable.period}",
                billing_reason=None,
                period_start=charge.period_start,
                period_end=charge.period_end,
                stripe_invoice_id=locked.stripe_invoice_id,
                overage_charge_id=charge.id,
                number=invoice.number if invoice else None,
                hosted_invoice_url=invoice.hosted_invoice_url if invoice else None,
                invoice_pdf_url=invoice.invoice_pdf_url if invoice else None,
                occurred_at=now,
            )
            .on_conflict_do_nothing(index_elements=["overage_charge_id"])
        )
    logger.info(
        "overage_charge_billed",
        charge_id=charge.id,
        status=status,
        amount=charge.amount,
        invoice=invoice.id if invoice else None,
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
    stripe_subscription_id: str | None,
) -> None:
    """Webhook processing calls this after an event's transaction committed: bill what the
    event closed (the pending charges of the subscription a renewal's `invoice.created`, or
    the subscription's deletion, is about) at once, while the renewal is still a draft."""
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
