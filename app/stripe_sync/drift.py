"""Finding drift: local subscriptions, billing-history invoices and mirrored cards compared
with Stripe's, each read through its owner's service; Stripe is read outside any
transaction."""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import service as billing_history_service
from app.billing_history.records import BillingRecord
from app.core.clock import Clock
from app.customers import service as customers_service
from app.models import PaymentMethod, Subscription, SubscriptionPlan
from app.payment_methods import service as payment_methods_service
from app.plans import service as plans_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import InvoiceState, PaymentMethodCard, SubscriptionState
from app.subscriptions import service as subscriptions_service


@dataclass(frozen=True, slots=True)
class Drift:
    object: str
    field: str
    local: str
    stripe: str


@dataclass(frozen=True, slots=True)
class CustomerCards:
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
    cards: list[CustomerCards] = field(default_factory=list)
    # Stripe subscription id → when Stripe made the plan change it differs by (see
    # `_plan_changed_at`); a repair dates the plan history by it.
    plan_changed_at: dict[str, datetime] = field(default_factory=dict)


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
        plans = await plans_service.list_plans(session)
        locals_ = await subscriptions_service.list_linked_to_stripe(session)
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
            if any(drift.field == "plan" for drift in found):
                changed_at = await _plan_changed_at(gateway, state)
                if changed_at is not None:
                    check.plan_changed_at[state.id] = changed_at


async def _plan_changed_at(gateway: StripeGateway, state: SubscriptionState) -> datetime | None:
    """When Stripe made a plan change whose webhook we never got, from Stripe's own record
    of it: a change made now is invoiced at once (`always_invoice`) by an invoice with
    `billing_reason=subscription_update`, whose proration lines start at the moment of the
    change (its `proration_date`), and a new interval's full-price line at the new period's
    start. None when the latest invoice is not such a change: a change a schedule applied at
    a renewal is dated right by the item's new period start, which the repair falls back to.
    """
    if state.latest_invoice_id is None:
        return None
    invoice = await gateway.find_invoice(state.latest_invoice_id)
    if invoice is None or invoice.billing_reason != "subscription_update":
        return None
    starts = [
        line.period_start
        for line in invoice.lines
        if line.for_subscription_item and line.period_start is not None
    ]
    return min(starts) if starts else invoice.created


async def _invoice_drift(
    sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway, check: DriftCheck
) -> None:
    async with sessionmaker() as session:
        rows = await billing_history_service.list_invoice_rows(session)
        stripe_ids = await customers_service.stripe_customer_ids(
            session, {row.customer_id for row in rows}
        )
    by_customer: dict[str, list[BillingRecord]] = defaultdict(list)
    for row in rows:
        if row.customer_id in stripe_ids:
            by_customer[stripe_ids[row.customer_id]].append(row)
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
        customers = await customers_service.list_linked_to_stripe(session)
        mirrored = await payment_methods_service.mirrored_cards_by_customer(session)
    for customer in customers:
        assert customer.stripe_customer_id is not None
        cards = await gateway.list_payment_methods(customer_id=customer.stripe_customer_id)
        default_id = await gateway.default_payment_method_id(
            customer_id=customer.stripe_customer_id
        )
        on_stripe = {card.id: card for card in cards}
        local = {row.stripe_payment_method_id: row for row in mirrored.get(customer.id, [])}
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
                CustomerCards(
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
