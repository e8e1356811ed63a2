"""Subscribe: the seed's `POST subscribe/`, safe under retries and concurrent requests.

The flow (STYLE rule 2): reserve the account's one subscription slot in a first short
transaction (a `pending` row under the one-live-subscription index), call Stripe with
idempotency keys derived from that reservation, then record Stripe's answer in a second
transaction. A retry of the same request finds the reservation and repeats the same Stripe
calls with the same keys, so Stripe answers with what it already did instead of doing it twice.
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings
from app.core.db import flush_unique
from app.core.errors import AppError
from app.customers.stripe_customers import ensure_stripe_customer
from app.models import Customer, Subscription, SubscriptionAddOn
from app.payment_methods import service as payment_methods_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.errors import PaymentDeclined, StripeUnavailable
from app.stripe_gateway.types import SubscriptionState
from app.subscriptions import catalog, repository
from app.subscriptions.errors import SubscriptionExists
from app.subscriptions.schemas import SubscribeRequest
from app.subscriptions.stripe_sync import apply_stripe_state

# How long a request holds a reservation while it talks to Stripe. A request that died
# (crash, timeout) stops blocking retries after this.
RESERVATION_LEASE = timedelta(minutes=2)
# Statuses that mean "you are subscribed": a second subscribe is a conflict, not a retry.
SETTLED_STATUSES = {"trialing", "active", "past_due", "unpaid", "paused"}


@dataclass(frozen=True, slots=True)
class SubscribeOutcome:
    subscription_id: int
    client_secret: str | None = None
    client_secret_type: Literal["payment_intent", "setup_intent"] | None = None


@dataclass(frozen=True, slots=True)
class _Reservation:
    subscription_id: int
    stripe_subscription_id: str | None
    fingerprint: str
    trial_days: int
    items: list[tuple[str, int]]


async def _reserve(
    session: AsyncSession,
    *,
    customer: Customer,
    subscribe_request: SubscribeRequest,
    clock: Clock,
    default_trial_days: int,
) -> _Reservation:
    plan = await catalog.resolve_plan(session, subscribe_request.plan_id)
    cycle = subscribe_request.billing_cycle
    items = [(catalog.price_id(plan, cycle), 1)]
    add_ons = []
    for selection in subscribe_request.add_ons:
        add_on = await catalog.resolve_add_on(session, selection.addon_id, selection.quantity)
        items.append((catalog.price_id(add_on, cycle), selection.quantity))
        add_ons.append((add_on, selection.quantity))
    fingerprint = catalog.fingerprint(plan.id, cycle, sorted(items))
    trial_days = default_trial_days if plan.trial_days is None else plan.trial_days
    now = clock.now()

    existing = await repository.get_live_for_customer(session, customer.id, for_update=True)
    if existing is not None:
        if existing.status in SETTLED_STATUSES:
            raise SubscriptionExists(details={"status": existing.status})
        if existing.reserved_until is not None and existing.reserved_until > now:
            raise SubscriptionExists(
                "A subscribe for this account is in progress.", details={"status": "pending"}
            )
        if existing.request_fingerprint != fingerprint:
            raise SubscriptionExists(
                "A subscription to another plan is being set up for this account.",
                details={"status": existing.status},
            )
        # A retry: the same request after a failure, or a new card for an incomplete one.
        existing.reserved_until = now + RESERVATION_LEASE
        return _Reservation(
            existing.id, existing.stripe_subscription_id, fingerprint, trial_days, items
        )

    reservation = Subscription(
        customer_id=customer.id,
        plan_id=plan.id,
        billing_cycle=cycle,
        status="pending",
        request_fingerprint=fingerprint,
        reserved_until=now + RESERVATION_LEASE,
    )
    session.add(reservation)
    # The partial unique index is the referee when two subscribes race past the check above.
    await flush_unique(session, SubscriptionExists())
    for add_on, quantity in add_ons:
        session.add(
            SubscriptionAddOn(
                subscription_id=reservation.id, add_on_id=add_on.id, quantity=quantity
            )
        )
    await session.flush()
    return _Reservation(reservation.id, None, fingerprint, trial_days, items)


async def _release(
    sessionmaker: async_sessionmaker[AsyncSession], reservation: _Reservation, *, forget: bool
) -> None:
    """After a failure: drop a reservation that never reached Stripe (`forget`), or just its
    lease, so the retry can resume it at once."""
    async with sessionmaker.begin() as session:
        subscription = await repository.get_for_update(session, reservation.subscription_id)
        if forget and subscription.stripe_subscription_id is None:
            await repository.delete_subscription_with_add_ons(session, subscription.id)
        else:
            subscription.reserved_until = None


async def _create_or_resume_on_stripe(
    gateway: StripeGateway,
    *,
    reservation: _Reservation,
    stripe_customer_id: str,
    payment_method_id: str,
    customer: Customer,
) -> SubscriptionState:
    if reservation.stripe_subscription_id is None:
        # Keyed by the reservation and what it asked for, not by the card: a retry after a
        # timeout, even with another card, can never create a second subscription.
        return await gateway.create_subscription(
            customer_id=stripe_customer_id,
            items=reservation.items,
            trial_days=reservation.trial_days,
            metadata={
                "billing_subscription_id": str(reservation.subscription_id),
                "dashboard_user_id": customer.dashboard_user_id,
            },
            idempotency_key=f"subscribe:{reservation.subscription_id}:{reservation.fingerprint[:32]}",
        )
    state = await gateway.retrieve_subscription(reservation.stripe_subscription_id)
    if (
        state.status == "incomplete"
        and state.latest_invoice_id
        and state.latest_invoice_status == "open"
    ):
        outcome = await gateway.latest_payment_outcome(invoice_id=state.latest_invoice_id)
        if outcome.payment_intent_status != "requires_action":
            # The first card was declined: pay the same open invoice with this card rather
            # than creating a second subscription.
            try:
                await gateway.pay_invoice(
                    invoice_id=state.latest_invoice_id,
                    payment_method_id=payment_method_id,
                    idempotency_key=f"pay-invoice:{state.latest_invoice_id}:{payment_method_id}",
                )
            except PaymentDeclined as declined:
                if (declined.details or {}).get(
                    "stripe_code"
                ) != "invoice_payment_intent_requires_action":
                    raise
            state = await gateway.retrieve_subscription(state.id)
    return state


async def subscribe(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    customer: Customer,
    subscribe_request: SubscribeRequest,
) -> SubscribeOutcome:
    """Create the account's subscription on Stripe and charge its first invoice now.

    Paid or trialing: done. SCA needed: the outcome carries the client secret for Stripe.js.
    Declined: `PaymentDeclined` (402) after recording the `incomplete` subscription, which a
    retry with another card pays.
    """
    async with sessionmaker.begin() as session:
        reservation = await _reserve(
            session,
            customer=customer,
            subscribe_request=subscribe_request,
            clock=clock,
            default_trial_days=settings.TRIAL_PERIOD_DAYS,
        )

    try:
        stripe_customer_id = await ensure_stripe_customer(
            sessionmaker=sessionmaker, gateway=gateway, customer=customer
        )
        await payment_methods_service.attach_for_subscription(
            sessionmaker=sessionmaker,
            gateway=gateway,
            customer=customer,
            stripe_customer_id=stripe_customer_id,
            payment_method_id=subscribe_request.payment_method_id,
        )
        state = await _create_or_resume_on_stripe(
            gateway,
            reservation=reservation,
            stripe_customer_id=stripe_customer_id,
            payment_method_id=subscribe_request.payment_method_id,
            customer=customer,
        )
    except StripeUnavailable:
        # Whether Stripe acted is unknown: keep the reservation (and so the idempotency key)
        # for the retry, which gets Stripe's first answer.
        await _release(sessionmaker, reservation, forget=False)
        raise
    except AppError:
        await _release(sessionmaker, reservation, forget=True)
        raise

    async with sessionmaker.begin() as session:
        subscription = await repository.get_for_update(session, reservation.subscription_id)
        await apply_stripe_state(session, subscription, state)

    if state.status == "incomplete":
        outcome = (
            await gateway.latest_payment_outcome(invoice_id=state.latest_invoice_id)
            if state.latest_invoice_id
            else None
        )
        if outcome is not None and outcome.payment_intent_status == "requires_action":
            return SubscribeOutcome(
                reservation.subscription_id, state.invoice_client_secret, "payment_intent"
            )
        raise PaymentDeclined(
            outcome.failure_message if outcome and outcome.failure_message else None,
            details={
                "decline_code": outcome.decline_code if outcome else None,
                "subscription_status": "incomplete",
            },
        )
    if state.status == "trialing" and state.setup_intent_status == "requires_action":
        return SubscribeOutcome(
            reservation.subscription_id, state.setup_intent_client_secret, "setup_intent"
        )
    return SubscribeOutcome(reservation.subscription_id)
