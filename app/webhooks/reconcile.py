"""`billing reconcile` and its nightly run: catch up on the events Stripe has that we never
stored, then compare local state with Stripe's and, asked to, repair it from Stripe.

Stripe is read first, outside any transaction; each repair is then a short transaction of
its own, under the object's webhook watermark: a repair never overwrites state that a newer
event applied meanwhile, and an older event processed after it re-fetches from Stripe
instead of undoing it.
"""

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import service as billing_history_service
from app.core.clock import Clock
from app.jobs.context import JobContext, job
from app.models import (
    BillingHistory,
    Customer,
    OperatorAlert,
    PaymentMethod,
    StripeEvent,
    Subscription,
    SubscriptionPlan,
)
from app.payment_methods import repository as payment_methods_repository
from app.plans import repository as plans_repository
from app.plans import service as plans_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import InvoiceState, PaymentMethodCard, SubscriptionState
from app.subscriptions import repository as subscriptions_repository
from app.subscriptions.stripe_state import apply_stripe_state
from app.webhooks import repository
from app.webhooks.processing import process_event
from app.webhooks.service import _event_row

logger = structlog.get_logger(__name__)

# The alert lists this many differences; the operator runs `billing reconcile` for all.
ALERT_DETAILS_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Drift:
    object: str
    field: str
    local: str
    stripe: str


@dataclass(frozen=True, slots=True)
class CatchUpReport:
    # Where the listing started: `--since`, else the newest event stored (None: all of
    # Stripe's 30 days).
    since: datetime | None
    listed: int
    stored: int
    outcomes: dict[str, int]


@dataclass(frozen=True, slots=True)
class _CustomerCards:
    customer_id: int
    # The customer's default card on Stripe, when it is a card.
    default_id: str | None
    to_upsert: list[PaymentMethodCard]
    to_delete: list[str]
    default_differs: bool


@dataclass
class DriftCheck:
    """The differences found, and the Stripe state (read at `fetched_at`) to repair from."""

    fetched_at: datetime
    drifts: list[Drift] = field(default_factory=list)
    subscriptions: list[SubscriptionState] = field(default_factory=list)
    # (local customer id, Stripe's invoice)
    invoices: list[tuple[int, InvoiceState]] = field(default_factory=list)
    cards: list[_CustomerCards] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    catch_up: CatchUpReport
    found: list[Drift]
    repaired: int
    remaining: list[Drift]


# --- catch-up --------------------------------------------------------------------------


async def catch_up_events(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    since: datetime | None,
    max_attempts: int,
) -> CatchUpReport:
    """Store the events Stripe lists that we never received, the way the webhook stores
    them, and process them here, oldest first."""
    if since is None:
        async with sessionmaker() as session:
            since = await session.scalar(select(func.max(StripeEvent.stripe_created_at)))
    # `created` has one-second resolution: from the newest stored second on (not after it),
    # or a missed event of that same second would never be listed. Those we have are
    # found by their id.
    events = await gateway.list_events(created_from=since)
    stored: list[str] = []
    async with sessionmaker.begin() as session:
        for event in events:
            if await repository.insert_event_if_new(session, _event_row(event, clock.now())):
                stored.append(event.id)
    outcomes: Counter[str] = Counter()
    for stripe_event_id in stored:
        result = await process_event(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            stripe_event_id=stripe_event_id,
            max_attempts=max_attempts,
        )
        outcomes[result.outcome] += 1
        logger.info("stripe_event_caught_up", event_id=stripe_event_id, outcome=result.outcome)
    return CatchUpReport(
        since=since, listed=len(events), stored=len(stored), outcomes=dict(outcomes)
    )


# --- drift -----------------------------------------------------------------------------


def _text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _compare(
    drifts: list[Drift], name: str, field_name: str, local: object, stripe: object
) -> None:
    if local != stripe:
        drifts.append(Drift(name, field_name, _text(local), _text(stripe)))


def _card_text(card: PaymentMethodCard | PaymentMethod) -> str:
    return f"{card.brand} {card.last4} {card.exp_month}/{card.exp_year}"


def _card_details(card: PaymentMethodCard | PaymentMethod) -> tuple[Any, ...]:
    return (card.brand, card.last4, card.exp_month, card.exp_year)


def _plan_prices(plans: Sequence[SubscriptionPlan]) -> dict[str, str]:
    """Each catalog price id → "slug cycle"."""
    labels: dict[str, str] = {}
    for plan in plans:
        if plan.stripe_monthly_price_id:
            labels[plan.stripe_monthly_price_id] = f"{plan.slug} monthly"
        if plan.stripe_yearly_price_id:
            labels[plan.stripe_yearly_price_id] = f"{plan.slug} yearly"
    return labels


def _stripe_plan(
    local: Subscription, local_plan: str, state: SubscriptionState, prices: dict[str, str]
) -> str:
    for item in state.items:
        if item.price_id in prices:
            return prices[item.price_id]
    if any(item.id == local.stripe_plan_item_id for item in state.items):
        # The plan item is billed at a price since replaced in the catalog: still the plan
        # it was sold as.
        return local_plan
    return "unknown price " + ", ".join(item.price_id for item in state.items)


async def _subscription_drift(
    sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway, check: DriftCheck
) -> None:
    async with sessionmaker() as session:
        plans = await plans_repository.list_plans(session, active_only=False)
        # A `pending` row is a subscribe still in flight; its request completes it.
        locals_ = (
            await session.scalars(
                select(Subscription)
                .where(
                    Subscription.stripe_subscription_id.is_not(None),
                    Subscription.status != "pending",
                )
                .order_by(Subscription.id)
            )
        ).all()
    if not locals_:
        return
    slugs = {plan.id: plan.slug for plan in plans}
    prices = _plan_prices(plans)
    on_stripe = {state.id: state for state in await gateway.list_subscriptions()}
    for local in locals_:
        name = f"subscription {local.stripe_subscription_id}"
        state = on_stripe.get(local.stripe_subscription_id or "")
        if state is None:
            check.drifts.append(Drift(name, "exists", "yes", "no"))
            continue
        local_plan = f"{slugs.get(local.plan_id)} {local.billing_cycle}"
        found: list[Drift] = []
        _compare(found, name, "status", local.status, state.status)
        _compare(found, name, "plan", local_plan, _stripe_plan(local, local_plan, state, prices))
        _compare(
            found,
            name,
            "cancel_at_period_end",
            local.cancel_at_period_end,
            state.cancel_at_period_end,
        )
        _compare(
            found, name, "current_period_end", local.current_period_end, state.current_period_end
        )
        if found:
            check.drifts.extend(found)
            check.subscriptions.append(state)


async def _invoice_drift(
    sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway, check: DriftCheck
) -> None:
    async with sessionmaker() as session:
        rows = (
            await session.execute(
                select(BillingHistory, Customer.stripe_customer_id)
                .join(Customer, Customer.id == BillingHistory.customer_id)
                .where(
                    BillingHistory.stripe_refund_id.is_(None),
                    BillingHistory.stripe_invoice_id.is_not(None),
                    # An overage row is one charge on its invoice, not the invoice itself.
                    BillingHistory.overage_charge_id.is_(None),
                    Customer.stripe_customer_id.is_not(None),
                )
                .order_by(BillingHistory.id)
            )
        ).all()
    by_customer: dict[str, list[BillingHistory]] = defaultdict(list)
    for row, stripe_customer_id in rows:
        by_customer[str(stripe_customer_id)].append(row)
    for stripe_customer_id, history in by_customer.items():
        invoices = {
            invoice.id: invoice
            for invoice in await gateway.list_invoices(customer_id=stripe_customer_id)
        }
        for row in history:
            name = f"invoice {row.stripe_invoice_id}"
            invoice = invoices.get(row.stripe_invoice_id or "")
            if invoice is None:
                check.drifts.append(Drift(name, "exists", "yes", "no"))
                continue
            found: list[Drift] = []
            _compare(found, name, "status", row.status, invoice.status)
            _compare(
                found,
                name,
                "amount",
                f"{row.amount} {row.currency}",
                f"{invoice.total} {invoice.currency}",
            )
            if found:
                check.drifts.extend(found)
                check.invoices.append((row.customer_id, invoice))


async def _card_drift(
    sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway, check: DriftCheck
) -> None:
    async with sessionmaker() as session:
        customers = (
            await session.scalars(
                select(Customer)
                .where(
                    Customer.stripe_customer_id.is_not(None),
                    Customer.stripe_customer_deleted_at.is_(None),
                )
                .order_by(Customer.id)
            )
        ).all()
        mirrored: dict[int, list[PaymentMethod]] = defaultdict(list)
        for mirror in await session.scalars(select(PaymentMethod).order_by(PaymentMethod.id)):
            mirrored[mirror.customer_id].append(mirror)
    for customer in customers:
        assert customer.stripe_customer_id is not None
        cards = await gateway.list_payment_methods(customer_id=customer.stripe_customer_id)
        default_id = await gateway.default_payment_method_id(
            customer_id=customer.stripe_customer_id
        )
        on_stripe = {card.id: card for card in cards}
        local = {row.stripe_payment_method_id: row for row in mirrored[customer.id]}
        name = f"customer {customer.dashboard_user_id}"
        found: list[Drift] = []
        to_upsert: list[PaymentMethodCard] = []
        for card in cards:
            row = local.get(card.id)
            if row is None or _card_details(row) != _card_details(card):
                local_text = "missing" if row is None else _card_text(row)
                found.append(Drift(name, f"card {card.id}", local_text, _card_text(card)))
                to_upsert.append(card)
        to_delete = [card_id for card_id in local if card_id not in on_stripe]
        for card_id in to_delete:
            found.append(Drift(name, f"card {card_id}", _card_text(local[card_id]), "missing"))
        # Only a card can be the mirror's default; another kind of default shows as none.
        expected_default = default_id if default_id in on_stripe else None
        local_default = next(
            (row.stripe_payment_method_id for row in local.values() if row.is_default), None
        )
        default_differs = local_default != expected_default
        if default_differs:
            found.append(Drift(name, "default card", _text(local_default), _text(expected_default)))
        if found:
            check.drifts.extend(found)
            check.cards.append(
                _CustomerCards(
                    customer_id=customer.id,
                    default_id=expected_default,
                    to_upsert=to_upsert,
                    to_delete=to_delete,
                    default_differs=default_differs,
                )
            )


async def find_drift(
    *, sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway, clock: Clock
) -> DriftCheck:
    """Compare every linked subscription (status, plan, cancel_at_period_end, period end),
    every billing-history invoice (status, amount) and every customer's mirrored cards
    (details, default) with Stripe."""
    # Taken before reading Stripe: what we read is at least this recent.
    check = DriftCheck(fetched_at=clock.now())
    await _subscription_drift(sessionmaker, gateway, check)
    await _invoice_drift(sessionmaker, gateway, check)
    await _card_drift(sessionmaker, gateway, check)
    return check


# --- repair ----------------------------------------------------------------------------


async def claim_watermark(
    session: AsyncSession, *, object_type: str, object_id: str, as_of: datetime
) -> bool:
    """Take an object's watermark to apply its state as Stripe held it at `as_of`.

    False, changing nothing, when state at least as recent was applied meanwhile. Otherwise
    the watermark moves to `as_of`, so an older event processed later re-fetches the object
    instead of undoing what is applied now.
    """
    watermark = await repository.lock_watermark(
        session, object_id=object_id, object_type=object_type
    )
    if watermark.applied_as_of is not None and watermark.applied_as_of >= as_of:
        return False
    watermark.applied_as_of = as_of
    return True


async def _repair_subscription(
    session: AsyncSession, state: SubscriptionState, as_of: datetime
) -> bool:
    if not await claim_watermark(
        session, object_type="subscription", object_id=state.id, as_of=as_of
    ):
        return False
    subscription = await subscriptions_repository.get_by_stripe_id(
        session, state.id, for_update=True
    )
    if subscription is None:
        return False
    await apply_stripe_state(session, subscription, state)
    return True


async def _repair_invoice(
    session: AsyncSession, customer_id: int, invoice: InvoiceState, as_of: datetime
) -> bool:
    if not await claim_watermark(session, object_type="invoice", object_id=invoice.id, as_of=as_of):
        return False
    await billing_history_service.record_invoice(
        session,
        invoice=invoice,
        customer_id=customer_id,
        # None keeps the subscription the row is linked to.
        subscription_id=None,
        add_on_price_ids=await plans_service.add_on_price_ids(session),
    )
    return True


async def _repair_cards(session: AsyncSession, cards: _CustomerCards, as_of: datetime) -> bool:
    changed = False
    # Watermarks in id order: two repairs of one customer lock them in the same order.
    for card in sorted(cards.to_upsert, key=lambda card: card.id):
        if await claim_watermark(
            session, object_type="payment_method", object_id=card.id, as_of=as_of
        ):
            await payment_methods_repository.upsert_card(
                session, customer_id=cards.customer_id, card=card
            )
            changed = True
    for card_id in sorted(cards.to_delete):
        row = await payment_methods_repository.get_for_customer(session, cards.customer_id, card_id)
        if row is not None and await claim_watermark(
            session, object_type="payment_method", object_id=card_id, as_of=as_of
        ):
            await payment_methods_repository.delete_card(session, row)
            changed = True
    if cards.default_differs:
        if cards.default_id is not None:
            await payment_methods_repository.set_default(
                session, customer_id=cards.customer_id, stripe_payment_method_id=cards.default_id
            )
        else:
            for row in await payment_methods_repository.list_for_customer(
                session, cards.customer_id
            ):
                row.is_default = False
        changed = True
    return changed


async def repair_drift(*, sessionmaker: async_sessionmaker[AsyncSession], check: DriftCheck) -> int:
    """Bring local state in line with what `find_drift` read from Stripe, one short
    transaction per object; returns how many objects were changed."""
    repaired = 0
    for state in check.subscriptions:
        async with sessionmaker.begin() as session:
            repaired += await _repair_subscription(session, state, check.fetched_at)
    for customer_id, invoice in check.invoices:
        async with sessionmaker.begin() as session:
            repaired += await _repair_invoice(session, customer_id, invoice, check.fetched_at)
    for cards in check.cards:
        async with sessionmaker.begin() as session:
            repaired += await _repair_cards(session, cards, check.fetched_at)
    return repaired


# --- the command and the nightly job ---------------------------------------------------


async def reconcile_with_stripe(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    fix: bool,
    since: datetime | None,
    max_attempts: int,
) -> ReconcileReport:
    """Catch up on missed events, then find drift; with `fix`, repair it and check again,
    so `remaining` is what is still different after the repair."""
    catch_up = await catch_up_events(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        since=since,
        max_attempts=max_attempts,
    )
    check = await find_drift(sessionmaker=sessionmaker, gateway=gateway, clock=clock)
    if not fix or not check.drifts:
        return ReconcileReport(catch_up, check.drifts, 0, check.drifts)
    repaired = await repair_drift(sessionmaker=sessionmaker, check=check)
    after = await find_drift(sessionmaker=sessionmaker, gateway=gateway, clock=clock)
    return ReconcileReport(catch_up, check.drifts, repaired, after.drifts)


async def raise_drift_alert(session: AsyncSession, *, drifts: list[Drift], now: datetime) -> None:
    """One operator alert a day, however often drift is found that day."""
    await session.execute(
        insert(OperatorAlert)
        .values(
            kind="stripe_drift",
            severity="high",
            message=f"{len(drifts)} differences between local state and Stripe; "
            "run `billing reconcile` to see them and `billing reconcile --fix` to repair them.",
            details={
                "count": len(drifts),
                "drift": [asdict(drift) for drift in drifts[:ALERT_DETAILS_LIMIT]],
            },
            dedupe_key=f"stripe_drift:{now.date().isoformat()}",
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=[OperatorAlert.dedupe_key])
    )


async def reconcile_and_alert(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    max_attempts: int,
) -> ReconcileReport:
    """The nightly check: catch up, find drift, repair nothing, alert on drift."""
    report = await reconcile_with_stripe(
        sessionmaker=sessionmaker,
        gateway=gateway,
        clock=clock,
        fix=False,
        since=None,
        max_attempts=max_attempts,
    )
    if report.remaining:
        logger.warning("stripe_drift", count=len(report.remaining))
        async with sessionmaker.begin() as session:
            await raise_drift_alert(session, drifts=report.remaining, now=clock.now())
    return report


@job
async def reconcile_stripe_nightly(context: JobContext) -> int:
    """arq cron job: `reconcile_and_alert`; returns the number of differences."""
    report = await reconcile_and_alert(
        sessionmaker=context.sessionmaker,
        gateway=context.stripe_gateway,
        clock=context.clock,
        max_attempts=context.settings.WEBHOOK_MAX_ATTEMPTS,
    )
    return len(report.remaining)


def drift_table(drifts: list[Drift]) -> list[str]:
    """The drift as aligned text columns: object, field, local, stripe."""
    rows = [("OBJECT", "FIELD", "LOCAL", "STRIPE")] + [
        (drift.object, drift.field, drift.local, drift.stripe) for drift in drifts
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True))
        + "  "
        + row[3]
        for row in rows
    ]
