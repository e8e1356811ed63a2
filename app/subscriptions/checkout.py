"""Stripe Checkout and the billing portal: the customer pays, or manages their subscription,
on Stripe's hosted pages.

One live subscription per account holds here as in subscribe, and a second checkout is
**refused before payment**, never charged and refunded:

- A checkout reserves the account's slot like subscribe does: a `pending` subscription row
  under the one-live-subscription partial unique index, naming its Checkout Session
  (`checkout_session_id`, unique). While the session is open the slot stays taken, so a
  subscribe is 409 `subscription_exists` and only this session can create the subscription.
- A new checkout while one is open replaces it: the open session is expired on Stripe first
  (an expired session can no longer be paid), then a new one is created. Had the customer
  paid it meanwhile, the checkout is 409 `subscription_exists`. While a request replaces the
  session the row names none (so that session's expiry event leaves the row alone) and holds
  a short lease, so a second checkout meanwhile is 409; the new session is recorded only if
  the row is still waiting for it (compare and set), else it is expired before answering.
- Creating a session that fails ambiguously (timeout, 5xx) keeps the reservation without a
  lease; a holder that died leaves its lease to lapse. Either way the next checkout (or
  subscribe) takes the reservation over and first expires any session Stripe holds for it
  (found by the reservation id in its metadata), so no unrecorded session stays payable.
- A session lives `CHECKOUT_SESSION_LIFETIME` (Stripe's minimum is 30 minutes); its expiry
  (`checkout.session.expired`) releases the slot.
- `checkout.session.completed` applies the subscription it created to the reservation (by the
  reservation id in the subscription's metadata), as `customer.subscription.created` does;
  whichever comes first links it, the other finds the same row. A completed session whose
  reservation is gone (which the rules above prevent) raises an operator alert.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import Clock
from app.core.config import Settings
from app.core.errors import AppError
from app.customers import service as customers_service
from app.models import Customer
from app.operator_alerts import service as operator_alerts_service
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.errors import StripeUnavailable
from app.stripe_gateway.types import CheckoutSessionState, SubscriptionState
from app.subscriptions import repository
from app.subscriptions.errors import SubscriptionExists
from app.subscriptions.schemas import CheckoutSessionRequest
from app.subscriptions.stripe_state import apply_stripe_state
from app.subscriptions.subscribe import (
    ENDED_STATUSES,
    RESERVATION_LEASE,
    RESERVATION_METADATA_KEY,
    SETTLED_STATUSES,
    Order,
    build_order,
    expire_orphaned_checkouts,
    new_reservation,
    write_order,
)

CHECKOUT_SESSION_LIFETIME = timedelta(hours=1)
# The slot is held a little past the session's expiry: Stripe closes it at `expires_at`.
EXPIRY_MARGIN = timedelta(minutes=5)


def _in_progress() -> SubscriptionExists:
    return SubscriptionExists(
        "A subscribe or checkout for this account is in progress.", details={"status": "pending"}
    )


@dataclass(frozen=True, slots=True)
class _Slot:
    reservation_id: int
    order: Order
    # The open session this checkout replaces, expired before a new one is created.
    replaced: str | None
    # An earlier attempt held this reservation without recording a session: it may have
    # created one (its answer lost, or its process gone) that is still open.
    orphan_possible: bool


async def _reserve(
    session: AsyncSession,
    *,
    customer: Customer,
    request: CheckoutSessionRequest,
    settings: Settings,
    clock: Clock,
) -> _Slot:
    """Take the account's slot for a checkout. A settled subscription, or a subscribe or
    checkout under way (its lease not lapsed), is a 409."""
    order = await build_order(
        session,
        plan_id=request.plan_id,
        billing_cycle=request.billing_cycle,
        add_on_selections=request.add_ons,
        default_trial_days=settings.TRIAL_PERIOD_DAYS,
    )
    now = clock.now()
    existing = await repository.get_live_for_customer(session, customer.id, for_update=True)
    if existing is None:
        reservation = await new_reservation(session, customer_id=customer.id, order=order, now=now)
        return _Slot(reservation.id, order, replaced=None, orphan_possible=False)
    if existing.status in SETTLED_STATUSES:
        raise SubscriptionExists(details={"status": existing.status})
    if existing.status != "pending" or existing.stripe_subscription_id is not None:
        raise SubscriptionExists(
            "An unpaid subscription is open; pay it or let it expire.",
            details={"status": existing.status},
        )
    replaced = existing.checkout_session_id
    if replaced is None and existing.reserved_until is not None and existing.reserved_until > now:
        # A subscribe (or another checkout) is talking to Stripe under its lease.
        raise _in_progress()
    # Either an open session to replace, or a reservation whose holder failed or died before
    # recording a session (its lease lapsed or was released): this checkout takes it over.
    existing.checkout_session_id = None
    existing.reserved_until = now + RESERVATION_LEASE
    return _Slot(existing.id, order, replaced=replaced, orphan_possible=replaced is None)


async def _settle_earlier_subscribe(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    stripe_customer_id: str,
    reservation_id: int,
    clock: Clock,
) -> None:
    """The reservation taken over may be a subscribe's whose answer was lost after Stripe
    created the subscription: record it on the reservation and refuse the checkout (409), as
    that subscribe's own retry would have found it."""
    found = await gateway.find_subscription_by_metadata(
        customer_id=stripe_customer_id, key=RESERVATION_METADATA_KEY, value=str(reservation_id)
    )
    if found is None:
        return
    async with sessionmaker.begin() as session:
        subscription = await repository.get_unconfirmed_reservation(
            session, reservation_id, for_update=True
        )
        if subscription is not None:
            await apply_stripe_state(session, subscription, found, now=clock.now())
    if found.status in ENDED_STATUSES:
        raise SubscriptionExists("The subscription changed meanwhile; retry.")
    raise SubscriptionExists(details={"status": found.status})


def _is_ambiguous(error: Exception) -> bool:
    """Whether Stripe may have acted on a call that failed: a timeout, a lost connection, a
    5xx (`StripeUnavailable`), or anything unexpected. A 4xx refusal is definite."""
    return isinstance(error, StripeUnavailable) or not isinstance(error, AppError)


async def start_checkout(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    clock: Clock,
    settings: Settings,
    customer: Customer,
    request: CheckoutSessionRequest,
    attempt: str,
) -> CheckoutSessionState:
    """Create a Checkout Session (subscription mode) for the account and hold its slot."""
    async with sessionmaker.begin() as session:
        slot = await _reserve(
            session, customer=customer, request=request, settings=settings, clock=clock
        )
    reservation_id, order, replaced = slot.reservation_id, slot.order, slot.replaced
    # Whether Stripe may hold a session for this reservation that the row does not name: an
    # earlier attempt's until it is found and expired, then this attempt's once it is sent.
    orphans_left = slot.orphan_possible
    create_sent = False
    try:
        stripe_customer_id = await customers_service.ensure_stripe_customer(
            sessionmaker=sessionmaker, gateway=gateway, customer=customer
        )
        if replaced is not None:
            previous = await gateway.expire_checkout_session(replaced)
            if previous.status == "complete":
                # Paid meanwhile: its `checkout.session.completed` records the subscription.
                raise SubscriptionExists(details={"status": "checkout_complete"})
        if slot.orphan_possible:
            await _settle_earlier_subscribe(
                sessionmaker, gateway, stripe_customer_id, reservation_id, clock
            )
            # Paid meanwhile: its `checkout.session.completed` records the subscription.
            if await expire_orphaned_checkouts(
                gateway, stripe_customer_id=stripe_customer_id, reservation_id=reservation_id
            ):
                raise SubscriptionExists(details={"status": "checkout_complete"})
            orphans_left = False
        expires_at = clock.now() + CHECKOUT_SESSION_LIFETIME
        # What this session follows: nothing, the open session it replaces, or an earlier
        # attempt that may have created one (found above and expired). That attempt's key
        # would replay its session, expired now, so a takeover has its own.
        follows = replaced or (f"takeover-{attempt}" if slot.orphan_possible else "first")
        create_sent = True
        created = await gateway.create_checkout_session(
            customer_id=stripe_customer_id,
            items=order.items,
            trial_days=order.trial_days,
            metadata={
                RESERVATION_METADATA_KEY: str(reservation_id),
                "dashboard_user_id": customer.dashboard_user_id,
            },
            success_url=settings.checkout_success_url,
            cancel_url=settings.STRIPE_CANCEL_URL,
            expires_at=expires_at,
            # From our ids: the reservation, what it buys, what it follows and the expiry
            # asked for (a parameter: the same key with another would be refused), so
            # stripe-python's own retries of this call get the same session back. A later
            # request does not rely on the key: it finds what this call may have created by
            # the reservation id in the metadata (`expire_orphaned_checkouts`).
            idempotency_key=(
                f"checkout:{reservation_id}:{order.fingerprint[:32]}:{follows}"
                f":{int(expires_at.timestamp())}"
            ),
            pending_invoice_item_interval="month" if order.billing_cycle == "yearly" else None,
        )
    except Exception as error:
        if orphans_left or (create_sent and _is_ambiguous(error)):
            # Stripe may hold a session we cannot name: keep the slot (a paid one's event
            # needs it), without a lease, so the next checkout (or subscribe) takes it over
            # and expires that session first.
            await _release_lease(sessionmaker, reservation_id)
        else:
            await _undo_reservation(sessionmaker, reservation_id, replaced, clock)
        raise

    async with sessionmaker.begin() as session:
        subscription = await repository.get_unconfirmed_reservation(
            session, reservation_id, for_update=True
        )
        recorded = (
            subscription is not None
            and subscription.status == "pending"
            and subscription.checkout_session_id is None
        )
        if subscription is not None and recorded:
            subscription.checkout_session_id = created.id
            subscription.reserved_until = (created.expires_at or expires_at) + EXPIRY_MARGIN
            await write_order(session, subscription, order)
    if not recorded:
        # The reservation was taken over meanwhile: this session must never be paid.
        await gateway.expire_checkout_session(created.id)
        raise _in_progress()
    return created


async def _release_lease(
    sessionmaker: async_sessionmaker[AsyncSession], reservation_id: int
) -> None:
    async with sessionmaker.begin() as session:
        subscription = await repository.get_unconfirmed_reservation(
            session, reservation_id, for_update=True
        )
        if subscription is not None and subscription.checkout_session_id is None:
            subscription.reserved_until = None


async def _undo_reservation(
    sessionmaker: async_sessionmaker[AsyncSession],
    reservation_id: int,
    replaced: str | None,
    clock: Clock,
) -> None:
    """A checkout that failed before Stripe could have created its session (or that Stripe
    refused). A first one frees the slot; a replacement names the session it meant to replace
    again (expired, or paid meanwhile: its own event then settles the row either way)."""
    async with sessionmaker.begin() as session:
        subscription = await repository.get_unconfirmed_reservation(
            session, reservation_id, for_update=True
        )
        if subscription is None or subscription.checkout_session_id is not None:
            return
        if replaced is None:
            await repository.delete_subscription_with_add_ons(session, reservation_id)
            return
        subscription.checkout_session_id = replaced
        # At most the old session's lifetime is left; its expiry event frees the slot sooner.
        subscription.reserved_until = clock.now() + CHECKOUT_SESSION_LIFETIME + EXPIRY_MARGIN


async def record_completed_checkout(
    session: AsyncSession,
    *,
    checkout: CheckoutSessionState,
    state: SubscriptionState | None,
    now: datetime,
) -> None:
    """`checkout.session.completed`: the subscription the customer paid for is the
    reservation's (found by its Stripe id, or by the reservation id in its metadata), with the
    state Stripe holds now. Applying it twice, or after `customer.subscription.created` linked
    it, changes nothing more."""
    if checkout.subscription_id is None or state is None:
        return
    subscription = await repository.get_by_stripe_id(session, state.id, for_update=True)
    reservation = state.metadata.get(RESERVATION_METADATA_KEY) or checkout.metadata.get(
        RESERVATION_METADATA_KEY
    )
    if subscription is None and reservation and reservation.isdigit():
        subscription = await repository.get_unconfirmed_reservation(
            session, int(reservation), for_update=True
        )
    if subscription is None:
        await operator_alerts_service.raise_alert(
            session,
            kind="checkout_without_reservation",
            message=(
                f"Checkout Session {checkout.id} created subscription {state.id}, which no "
                "reservation here expects: check the customer for a second live subscription "
                "and cancel and refund the extra one on Stripe."
            ),
            dedupe_key=f"checkout_without_reservation:{checkout.id}",
            now=now,
            details={"checkout_session": checkout.id, "subscription": state.id},
        )
        return
    await apply_stripe_state(session, subscription, state, now=now, observed_at=now)


async def release_expired_checkout(session: AsyncSession, *, checkout_session_id: str) -> None:
    """`checkout.session.expired`: the session can no longer be paid, so its reservation
    frees the account's slot (unless a subscribe took it over or it got a subscription)."""
    subscription = await repository.get_by_checkout_session_id(
        session, checkout_session_id, for_update=True
    )
    if (
        subscription is not None
        and subscription.status == "pending"
        and subscription.stripe_subscription_id is None
    ):
        await repository.delete_subscription_with_add_ons(session, subscription.id)


async def open_billing_portal(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    settings: Settings,
    customer: Customer,
) -> str:
    """The URL of a billing portal session for the account (cards, invoices, plan and
    cancellation as the portal's configuration allows). What the customer changes there
    comes back as webhooks and is applied like any other change."""
    stripe_customer_id = await customers_service.ensure_stripe_customer(
        sessionmaker=sessionmaker, gateway=gateway, customer=customer
    )
    return await gateway.create_billing_portal_session(
        customer_id=stripe_customer_id, return_url=settings.STRIPE_PORTAL_RETURN_URL
    )
