"""`billing import-stripe`: take over the customers, subscriptions and cards that the old
billing module left in the Stripe account, so this service runs them without a gap.

A Stripe customer belongs to the account named by its `dashboard_user_id` metadata (the
account is created if the user has none yet), else to the one account with its email.
Everything is read from Stripe first; each customer is then written in one short
transaction. Running it again adopts nothing twice: a linked customer, a subscription and a
card already mirrored are found by their Stripe ids.
"""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.customers import service as customers_service
from app.models import Customer
from app.models.subscription import LIVE_STATUSES
from app.payment_methods import service as payment_methods_service
from app.plans import service as plans_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.types import CustomerState, PaymentMethodCard, SubscriptionState
from app.subscriptions import service as subscriptions_service
from app.webhooks import service as webhooks_service

# `pending` is our own reservation state; Stripe never reports it.
_LIVE_ON_STRIPE = frozenset(LIVE_STATUSES) - {"pending"}


@dataclass(frozen=True, slots=True)
class ImportNote:
    kind: Literal["customer", "subscription", "card"]
    stripe_id: str
    detail: str


@dataclass
class ImportReport:
    adopted: list[ImportNote] = field(default_factory=list)
    # Found an account but left alone: a conflict, an unknown price, a second live one.
    not_adopted: list[ImportNote] = field(default_factory=list)
    # Stripe customers with no account to belong to.
    unmatched: list[ImportNote] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Match:
    dashboard_user_id: str
    how: Literal["linked", "metadata", "email"]


@dataclass(frozen=True, slots=True)
class _NoMatch:
    note: ImportNote
    # True: no account could be meant. False: one could, but it is linked elsewhere.
    nobody: bool


async def _match(session: AsyncSession, stripe_customer: CustomerState) -> _Match | _NoMatch:
    """The account a Stripe customer belongs to, or why it has none."""
    linked = await customers_service.find_by_stripe_customer_id(session, stripe_customer.id)
    if linked is not None:
        return _Match(linked.dashboard_user_id, "linked")
    if stripe_customer.dashboard_user_id:
        owner = await customers_service.get_by_dashboard_user_id(
            session, stripe_customer.dashboard_user_id
        )
        if owner is not None and owner.stripe_customer_id is not None:
            return _NoMatch(
                ImportNote(
                    "customer",
                    stripe_customer.id,
                    f"account {owner.dashboard_user_id} is linked to {owner.stripe_customer_id}",
                ),
                nobody=False,
            )
        return _Match(stripe_customer.dashboard_user_id, "metadata")
    if stripe_customer.email:
        candidates = await customers_service.list_by_email(session, stripe_customer.email)
        free = [candidate for candidate in candidates if candidate.stripe_customer_id is None]
        if len(free) == 1:
            return _Match(free[0].dashboard_user_id, "email")
        if len(free) > 1:
            return _NoMatch(
                ImportNote(
                    "customer",
                    stripe_customer.id,
                    f"{len(free)} accounts have the email {stripe_customer.email}",
                ),
                nobody=False,
            )
        if candidates:
            return _NoMatch(
                ImportNote(
                    "customer",
                    stripe_customer.id,
                    f"the account with its email is linked to {candidates[0].stripe_customer_id}",
                ),
                nobody=False,
            )
    return _NoMatch(
        ImportNote(
            "customer",
            stripe_customer.id,
            f"{stripe_customer.email or 'no email'}: no account with its dashboard_user_id "
            "or email",
        ),
        nobody=True,
    )


async def _link(
    session: AsyncSession, stripe_customer: CustomerState, match: _Match, report: ImportReport
) -> Customer | None:
    created = False
    if match.how == "metadata":
        created = (
            await customers_service.get_by_dashboard_user_id(session, match.dashboard_user_id)
            is None
        )
    customer = await customers_service.create_if_missing(
        session,
        dashboard_user_id=match.dashboard_user_id,
        email=stripe_customer.email,
        name=stripe_customer.name,
    )
    try:
        # A savepoint: another account holding this Stripe customer (a run racing this
        # one) is reported, not fatal.
        async with session.begin_nested():
            recorded: str | None = await customers_service.link_stripe_customer(
                session, customer_id=customer.id, stripe_customer_id=stripe_customer.id
            )
    except IntegrityError:
        recorded = None
    if recorded != stripe_customer.id:
        report.not_adopted.append(
            ImportNote("customer", stripe_customer.id, "linked to another account meanwhile")
        )
        return None
    customer.stripe_customer_id = recorded
    if match.how != "linked":
        detail = f"account {customer.dashboard_user_id} (by {match.how}"
        report.adopted.append(
            ImportNote(
                "customer",
                stripe_customer.id,
                detail + (", account created)" if created else ")"),
            )
        )
    return customer


async def _adopt_subscription(
    session: AsyncSession,
    customer: Customer,
    subscriptions: list[SubscriptionState],
    fetched_at: datetime,
    report: ImportReport,
) -> None:
    # Newest first (Stripe's order): of two live subscriptions the newer one is adopted,
    # since the one-live-subscription index admits one.
    live = [state for state in subscriptions if state.status in _LIVE_ON_STRIPE]
    plans = await plans_service.plans_by_price_ids(
        session, {item.price_id for state in live for item in state.items}
    )
    held = await subscriptions_service.find_live_for_customer(session, customer.id, lock=True)
    for state in live:
        if await subscriptions_service.find_by_stripe_id(session, state.id, lock=False):
            continue
        if held is not None:
            report.not_adopted.append(
                ImportNote(
                    "subscription",
                    state.id,
                    f"account {customer.dashboard_user_id} already has the live subscription "
                    f"{held.stripe_subscription_id or f'#{held.id}'}",
                )
            )
            continue
        plan_item = next((item for item in state.items if item.price_id in plans), None)
        if plan_item is None:
            prices = ", ".join(item.price_id for item in state.items)
            report.not_adopted.append(
                ImportNote("subscription", state.id, f"no plan has its price ({prices})")
            )
            continue
        plan, cycle = plans[plan_item.price_id]
        subscription = await subscriptions_service.adopt_stripe_subscription(
            session,
            customer_id=customer.id,
            plan_id=plan.id,
            billing_cycle=cycle,
            state=state,
            now=fetched_at,
        )
        if subscription is None:
            report.not_adopted.append(
                ImportNote("subscription", state.id, "the account subscribed meanwhile")
            )
            continue
        # The row is new, so nothing newer was applied to it whatever the watermark says;
        # moving it keeps an older event, processed later, from undoing this.
        await webhooks_service.claim_watermark(
            session, object_type="subscription", object_id=state.id, as_of=fetched_at
        )
        held = subscription
        report.adopted.append(
            ImportNote(
                "subscription",
                state.id,
                f"account {customer.dashboard_user_id} ({plan.slug} {cycle}, {state.status})",
            )
        )


async def _adopt_cards(
    session: AsyncSession,
    customer: Customer,
    cards: list[PaymentMethodCard],
    default_id: str | None,
    report: ImportReport,
) -> None:
    mirrored = {
        row.stripe_payment_method_id: row
        for row in await payment_methods_service.list_mirrored_cards(session, customer.id)
    }
    for card in cards:
        await payment_methods_service.mirror_card(session, customer_id=customer.id, card=card)
        if card.id not in mirrored:
            default = ", default" if card.id == default_id else ""
            report.adopted.append(
                ImportNote(
                    "card",
                    card.id,
                    f"account {customer.dashboard_user_id} ({card.brand} {card.last4}{default})",
                )
            )
    current_default = next((card_id for card_id, row in mirrored.items() if row.is_default), None)
    if default_id in {card.id for card in cards} and default_id != current_default:
        assert default_id is not None
        await payment_methods_service.mirror_default_card(
            session, customer_id=customer.id, stripe_payment_method_id=default_id
        )


async def _import_customer(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    stripe_customer: CustomerState,
    report: ImportReport,
) -> None:
    async with sessionmaker() as session:
        match = await _match(session, stripe_customer)
    if isinstance(match, _NoMatch):
        (report.unmatched if match.nobody else report.not_adopted).append(match.note)
        return
    fetched_at = clock.now()
    subscriptions = await gateway.list_subscriptions(customer_id=stripe_customer.id)
    cards = await gateway.list_payment_methods(customer_id=stripe_customer.id)
    async with sessionmaker.begin() as session:
        customer = await _link(session, stripe_customer, match, report)
        if customer is None:
            return
        await _adopt_subscription(session, customer, subscriptions, fetched_at, report)
        await _adopt_cards(
            session, customer, cards, stripe_customer.default_payment_method_id, report
        )


async def import_from_stripe(
    *, sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway, clock: Clock
) -> ImportReport:
    """Adopt every Stripe customer (all pages) with its live subscription and its cards;
    report what was adopted, what was left alone and which customers match no account."""
    report = ImportReport()
    for customer in await gateway.list_customers():
        await _import_customer(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            stripe_customer=customer,
            report=report,
        )
    return report
