"""Subscribe: the seed's `POST subscribe/`, safe under retries and concurrent requests.

The flow (STYLE rule 2): reserve the account's one subscription slot in a first short
transaction (a `pending` row under the one-live-subscription index), call Stripe with
idempotency keys derived from that reservation, then record Stripe's answer in a second
transaction. A retry of the same request finds the reservation: it looks on Stripe for the
subscription an earlier attempt may have created (by the reservation id in its metadata) and
resumes it, so Stripe never creates, or charges for, a second one.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings
from app.core.db import flush_unique
from app.core.errors import AppError
from app.customers import service as customers_service
from app.models import Customer, Subscription, SubscriptionAddOn
from app.payment_methods import service as payment_methods_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.errors import PaymentDeclined
from app.stripe_gateway.types import SubscriptionState
from app.subscriptions import catalog, repository
from app.subscriptions.errors import SubscriptionExists
from app.subscriptions.schemas import AddOnSelection, SubscribeRequest
from app.subscriptions.stripe_state import apply_stripe_state

# How long a request holds a reservation while it talks to Stripe (longer than its Stripe
# calls can take, retries included). A request that died stops blocking retries after this.
RESERVATION_LEASE = timedelta(minutes=5)
# Statuses that mean "you are subscribed": a second subscribe is a conflict, not a retry.
SETTLED_STATUSES = {"trialing", "active", "past_due", "unpaid", "paused"}
ENDED_STATUSES = {"incomplete_expired", "canceled"}
RESERVATION_METADATA_KEY = "billing_subscription_id"


@dataclass(frozen=True, slots=True)
class SubscribeOutcome:
    subscription_id: int
    client_secret: str | None = None
    client_secret_type: Literal["payment_intent", "setup_intent"] | None = None


@dataclass(frozen=True, slots=True)
class _Reservation:
    subscription_id: int
    stripe_subscription_id: str | None
    order: "Order"
    # A reservation an earlier request made (and maybe got as far as Stripe with).
    resumed: bool = False
    # That earlier request asked for something else; this one may take the slot over if
    # Stripe has nothing for it.
    rebind: bool = False


@dataclass(frozen=True, slots=True)
class Order:
    """What a subscribe or a checkout buys, as Stripe will be asked for it."""

    plan_id: int
    billing_cycle: str
    # (price id, quantity): the plan's price first, then the add-ons' in a fixed order.
    items: list[tuple[str, int]]
    # (add-on id, quantity), sorted.
    add_ons: list[tuple[int, int]]
    trial_days: int
    fingerprint: str


async def build_order(
    session: AsyncSession,
    *,
    plan_id: int | str,
    billing_cycle: str,
    add_on_selections: list[AddOnSelection],
    default_trial_days: int,
) -> Order:
    """The plan's and add-ons' prices for the cycle, and the trial (the plan's, else
    `TRIAL_PERIOD_DAYS`): the one place subscribe and Checkout take them from. An unknown or
    unsynced plan or add-on raises its 404/409 here."""
    plan = await catalog.resolve_plan(session, plan_id)
    add_on_items = []
    add_ons = []
    for selection in add_on_selections:
        add_on = await catalog.resolve_add_on(session, selection.addon_id, selection.quantity)
        add_on_items.append((catalog.price_id(add_on, billing_cycle), selection.quantity))
        add_ons.append((add_on.id, selection.quantity))
    # One order for the same request, however the client listed the add-ons: the Stripe
    # call must be identical for its idempotency key to be honoured.
    items = [(catalog.price_id(plan, billing_cycle), 1), *sorted(add_on_items)]
    trial_days = default_trial_days if plan.trial_days is None else plan.trial_days
    return Order(
        plan_id=plan.id,
        billing_cycle=billing_cycle,
        items=items,
        add_ons=sorted(add_ons),
        trial_days=trial_days,
        fingerprint=catalog.fingerprint(plan.id, billing_cycle, items, trial_days),
    )


async def _reserve(
    session: AsyncSession,
    *,
    customer: Customer,
    subscribe_request: SubscribeRequest,
    clock: Clock,
    default_trial_days: int,
) -> _Reservation:
    order = await build_order(
        session,
        plan_id=subscribe_request.plan_id,
        billing_cycle=subscribe_request.billing_cycle,
        add_on_selections=subscribe_request.add_ons,
        default_trial_days=default_trial_days,
    )
    now = clock.now()

    def reservation_of(subscription: Subscription, *, resumed: bool, rebind: bool) -> _Reservation:
        return _Reservation(
            subscription_id=subscription.id,
            stripe_subscription_id=subscription.stripe_subscription_id,
            order=order,
            resumed=resumed,
            rebind=rebind,
        )

    existing = await repository.get_live_for_customer(session, customer.id, for_update=True)
    if existing is not None:
        if existing.status in SETTLED_STATUSES:
            raise SubscriptionExists(details={"status": existing.status})
        if existing.reserved_until is not None and existing.reserved_until > now:
            if existing.checkout_session_id is not None:
                raise SubscriptionExists(
                    "A Stripe Checkout for this account is open; complete it or start a new "
                    "checkout.",
                    details={"status": "checkout_open"},
                )
            raise SubscriptionExists(
                "A subscribe for this account is in progress.", details={"status": "pending"}
            )
        rebind = existing.request_fingerprint != order.fingerprint
        if rebind and existing.status != "pending":
            raise SubscriptionExists(
                "An unpaid subscription to another plan is open; pay it or let it expire.",
                details={"status": existing.status},
            )
        # A retry: the same request after a failure, a new card for an incomplete one, or a
        # new request taking over an abandoned reservation (an expired checkout's too: its
        # session can no longer be paid, and its expiry event must not release this slot).
        existing.reserved_until = now + RESERVATION_LEASE
        existing.checkout_session_id = None
        return reservation_of(existing, resumed=True, rebind=rebind)

    reservation = await new_reservation(session, customer_id=customer.id, order=order, now=now)
    return reservation_of(reservation, resumed=False, rebind=False)


async def new_reservation(
    session: AsyncSession, *, customer_id: int, order: Order, now: datetime
) -> Subscription:
    """The account's one live-subscription slot, taken for `order` (a subscribe's or a
    checkout's) for the length of a lease."""
    reservation = Subscription(
        customer_id=customer_id,
        plan_id=order.plan_id,
        billing_cycle=order.billing_cycle,
        status="pending",
        request_fingerprint=order.fingerprint,
        reserved_until=now + RESERVATION_LEASE,
    )
    session.add(reservation)
    # The partial unique index is the referee when two subscribes or checkouts race past the
    # caller's check for a live subscription.
    await flush_unique(session, SubscriptionExists())
    await write_add_on_lines(session, reservation.id, order.add_ons)
    return reservation


async def write_add_on_lines(
    session: AsyncSession, subscription_id: int, add_ons: list[tuple[int, int]]
) -> None:
    for add_on_id, quantity in add_ons:
        session.add(
            SubscriptionAddOn(
                subscription_id=subscription_id, add_on_id=add_on_id, quantity=quantity
            )
        )
    await session.flush()


async def write_order(session: AsyncSession, subscription: Subscription, order: Order) -> None:
    """A reservation taken over by a request for something else now holds that order."""
    subscription.plan_id = order.plan_id
    subscription.billing_cycle = order.billing_cycle
    subscription.request_fingerprint = order.fingerprint
    await repository.delete_add_on_lines(session, subscription.id)
    await write_add_on_lines(session, subscription.id, order.add_ons)


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


async def expire_orphaned_checkouts(
    gateway: StripeGateway, *, stripe_customer_id: str, reservation_id: int
) -> bool:
    """Expire any Checkout Session an earlier checkout created for this reservation but never
    recorded (its answer lost, or its process gone): nobody was given its URL, yet it is
    payable until it expires. True when one was paid meanwhile; its subscription carries the
    reservation id, so `checkout.session.completed` (or `_settle_earlier_attempt`) links it."""
    found = await gateway.find_checkout_sessions_by_metadata(
        customer_id=stripe_customer_id, key=RESERVATION_METADATA_KEY, value=str(reservation_id)
    )
    paid = False
    for orphan in found:
        if orphan.status == "open":
            orphan = await gateway.expire_checkout_session(orphan.id)
        paid = paid or orphan.status == "complete"
    return paid


async def _settle_earlier_attempt(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    reservation: _Reservation,
    stripe_customer_id: str,
    now: datetime,
) -> _Reservation:
    """An earlier request held this reservation and may have created the subscription before
    it failed: look on Stripe (a list by customer, which is current, unlike search)."""
    found = await gateway.find_subscription_by_metadata(
        customer_id=stripe_customer_id,
        key=RESERVATION_METADATA_KEY,
        value=str(reservation.subscription_id),
    )
    if found is None:
        if reservation.rebind:
            async with sessionmaker.begin() as session:
                subscription = await repository.get_for_update(session, reservation.subscription_id)
                await write_order(session, subscription, reservation.order)
        return reservation
    async with sessionmaker.begin() as session:
        subscription = await repository.get_for_update(session, reservation.subscription_id)
        await apply_stripe_state(session, subscription, found, now=now)
    if reservation.rebind and found.status not in ENDED_STATUSES:
        raise SubscriptionExists(details={"status": found.status})
    return replace(reservation, stripe_subscription_id=found.id)


async def _create_or_resume_on_stripe(
    gateway: StripeGateway,
    *,
    reservation: _Reservation,
    stripe_customer_id: str,
    payment_method_id: str,
    customer: Customer,
    attempt: str,
) -> SubscriptionState:
    if reservation.stripe_subscription_id is None:
        # Keyed by the reservation and what it asked for, not by the card. A resumed
        # reservation was just looked up on Stripe and found absent, so it takes a fresh key:
        # Stripe would replay even a saved 500 for the old one.
        key = f"subscribe:{reservation.subscription_id}:{reservation.order.fingerprint[:32]}"
        if reservation.resumed:
            key = f"{key}:{attempt}"
        return await gateway.create_subscription(
            customer_id=stripe_customer_id,
            items=reservation.order.items,
            trial_days=reservation.order.trial_days,
            metadata={
                RESERVATION_METADATA_KEY: str(reservation.subscription_id),
                "dashboard_user_id": customer.dashboard_user_id,
            },
            idempotency_key=key,
            # Usage periods are monthly for both cycles: a yearly subscription's monthly
            # overage items are invoiced every month, not with the next yearly renewal.
            pending_invoice_item_interval="month"
            if reservation.order.billing_cycle == "yearly"
            else None,
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
            # than creating a second subscription. Stripe refuses to pay a paid invoice, so
            # each attempt may have its own key (a topped-up card is worth a new try).
            try:
                await gateway.pay_invoice(
                    invoice_id=state.latest_invoice_id,
                    payment_method_id=payment_method_id,
                    idempotency_key=f"pay-invoice:{state.latest_invoice_id}:{attempt}",
                )
            except PaymentDeclined as declined:
                stripe_code = (declined.details or {}).get("stripe_code")
                if stripe_code != "invoice_payment_intent_requires_action":
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
    attempt: str,
    _fresh: bool = True,
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

    create_sent = False
    try:
        stripe_customer_id = await customers_service.ensure_stripe_customer(
            sessionmaker=sessionmaker, gateway=gateway, customer=customer
        )
        await payment_methods_service.attach_for_subscription(
            sessionmaker=sessionmaker,
            gateway=gateway,
            customer=customer,
            stripe_customer_id=stripe_customer_id,
            payment_method_id=subscribe_request.payment_method_id,
            attempt=attempt,
        )
        if reservation.resumed and reservation.stripe_subscription_id is None:
            # The reservation may have been an abandoned checkout's: its session must not stay
            # payable beside the subscription created here.
            await expire_orphaned_checkouts(
                gateway,
                stripe_customer_id=stripe_customer_id,
                reservation_id=reservation.subscription_id,
            )
            reservation = await _settle_earlier_attempt(
                sessionmaker, gateway, reservation, stripe_customer_id, clock.now()
            )
        create_sent = True
        state = await _create_or_resume_on_stripe(
            gateway,
            reservation=reservation,
            stripe_customer_id=stripe_customer_id,
            payment_method_id=subscribe_request.payment_method_id,
            customer=customer,
            attempt=attempt,
        )
    except AppError:
        # Until the create was sent Stripe has nothing for a new reservation: free the slot.
        # After it, or for a resumed one (an earlier attempt may have created something),
        # whether Stripe holds something is unknown (a timeout, a 5xx): keep the reservation,
        # which the retry looks up on Stripe before anything else.
        await _release(sessionmaker, reservation, forget=not (create_sent or reservation.resumed))
        raise

    async with sessionmaker.begin() as session:
        subscription = await repository.get_for_update(session, reservation.subscription_id)
        # The welcome notice is written here, with the subscription it welcomes.
        await apply_stripe_state(session, subscription, state, now=clock.now())

    if state.status in ENDED_STATUSES:
        # The earlier attempt's subscription expired unpaid (or was canceled); recording it
        # freed the slot, so start afresh, once.
        if not _fresh:
            raise SubscriptionExists("The subscription changed meanwhile; retry.")
        return await subscribe(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            settings=settings,
            customer=customer,
            subscribe_request=subscribe_request,
            attempt=attempt,
            _fresh=False,
        )

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
