"""Cards: attach, list, make default, detach, and a SetupIntent for adding one with SCA.

Stripe holds the cards; the `payment_methods` table mirrors brand, last4, expiry and the
default flag so the list is one local query. Our own calls update it at once; the webhooks
keep it true when cards change elsewhere.
"""

from collections.abc import Sequence

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.customers import service as customers_service
from app.jobs.enqueue import RETRY_PAYMENT_WITH_NEW_CARD, enqueue_job
from app.models import Customer, PaymentMethod
from app.payment_methods import repository
from app.payment_methods.errors import LastPaymentMethod
from app.stripe_gateway.client import StripeGateway
from app.stripe_gateway.errors import PaymentMethodNotFound
from app.stripe_gateway.types import PaymentMethodCard


async def _attach_on_stripe(
    gateway: StripeGateway, *, customer: Customer, stripe_customer_id: str, payment_method_id: str
) -> None:
    card = await gateway.retrieve_payment_method(payment_method_id)
    if card.customer_id not in (None, stripe_customer_id):
        # Another customer's card: to this caller it does not exist.
        raise PaymentMethodNotFound()
    if card.customer_id is None:
        await gateway.attach_payment_method(
            payment_method_id=payment_method_id,
            customer_id=stripe_customer_id,
            idempotency_key=f"attach:{customer.id}:{payment_method_id}",
        )


async def _make_default_on_stripe(
    gateway: StripeGateway,
    *,
    customer: Customer,
    stripe_customer_id: str,
    payment_method_id: str,
    attempt: str,
) -> None:
    # Setting a default is safe to repeat, so the key is per attempt: A, then B, then A again
    # are three changes, never a replay of the first.
    await gateway.set_default_payment_method(
        customer_id=stripe_customer_id,
        payment_method_id=payment_method_id,
        idempotency_key=f"default-card:{customer.id}:{payment_method_id}:{attempt}",
    )


async def _current_default(
    sessionmaker: async_sessionmaker[AsyncSession], customer_id: int
) -> str | None:
    async with sessionmaker() as session:
        return await default_card_id(session, customer_id=customer_id)


async def _mirror(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    *,
    customer_id: int,
    payment_method_id: str,
    make_default: bool,
) -> None:
    card = await gateway.retrieve_payment_method(payment_method_id)
    async with sessionmaker.begin() as session:
        await repository.upsert_card(session, customer_id=customer_id, card=card)
        if make_default:
            await repository.set_default(
                session, customer_id=customer_id, stripe_payment_method_id=payment_method_id
            )


async def attach_for_subscription(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    customer: Customer,
    stripe_customer_id: str,
    payment_method_id: str,
    attempt: str,
) -> None:
    """Attach the card a subscribe names and make it the default that invoices charge."""
    await _attach(
        sessionmaker,
        gateway,
        customer=customer,
        stripe_customer_id=stripe_customer_id,
        payment_method_id=payment_method_id,
        set_default=True,
        attempt=attempt,
    )


async def _attach(
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    *,
    customer: Customer,
    stripe_customer_id: str,
    payment_method_id: str,
    set_default: bool,
    attempt: str,
) -> bool:
    """Attach (and mirror) the card; True when it became the default."""
    await _attach_on_stripe(
        gateway,
        customer=customer,
        stripe_customer_id=stripe_customer_id,
        payment_method_id=payment_method_id,
    )
    previous_default = await _current_default(sessionmaker, customer.id)
    # The first card becomes the default even when not asked: invoices need one to charge.
    make_default = set_default or previous_default is None
    becomes_default = make_default and previous_default != payment_method_id
    if becomes_default:
        await _make_default_on_stripe(
            gateway,
            customer=customer,
            stripe_customer_id=stripe_customer_id,
            payment_method_id=payment_method_id,
            attempt=attempt,
        )
    await _mirror(
        sessionmaker, gateway, customer_id=customer.id, payment_method_id=payment_method_id,
        make_default=make_default,
    )  # fmt: skip
    return becomes_default


async def list_payment_methods(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    customer: Customer,
) -> Sequence[PaymentMethod]:
    async with sessionmaker() as session:
        cards = await repository.list_for_customer(session, customer.id)
    if cards or customer.stripe_customer_id is None:
        return cards
    # An adopted customer's cards predate us: fill the mirror once from Stripe.
    stripe_cards = await gateway.list_payment_methods(customer_id=customer.stripe_customer_id)
    default = await gateway.default_payment_method_id(customer_id=customer.stripe_customer_id)
    async with sessionmaker.begin() as session:
        for card in stripe_cards:
            await repository.upsert_card(session, customer_id=customer.id, card=card)
        if default:
            await repository.set_default(
                session, customer_id=customer.id, stripe_payment_method_id=default
            )
    async with sessionmaker() as session:
        return await repository.list_for_customer(session, customer.id)


async def attach_payment_method(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    customer: Customer,
    payment_method_id: str,
    set_default: bool,
    attempt: str,
    redis: ArqRedis,
) -> PaymentMethod:
    stripe_customer_id = await customers_service.ensure_stripe_customer(
        sessionmaker=sessionmaker, gateway=gateway, customer=customer
    )
    new_default = await _attach(
        sessionmaker,
        gateway,
        customer=customer,
        stripe_customer_id=stripe_customer_id,
        payment_method_id=payment_method_id,
        set_default=set_default,
        attempt=attempt,
    )
    async with sessionmaker() as session:
        card = await repository.get_for_customer(session, customer.id, payment_method_id)
    assert card is not None
    if new_default:
        await _retry_dunned_payment(redis, customer, payment_method_id, attempt)
    return card


async def _retry_dunned_payment(
    redis: ArqRedis, customer: Customer, payment_method_id: str, attempt: str
) -> None:
    """A new default card: should a payment of the customer's be failing, subscriptions'
    dunning retries it now (a job by name: that layer is above this one). Lost with Redis,
    the scheduled retries still run."""
    await enqueue_job(
        redis,
        RETRY_PAYMENT_WITH_NEW_CARD,
        customer.id,
        job_id=f"new-card-retry:{customer.id}:{payment_method_id}:{attempt}",
    )


async def make_default(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    customer: Customer,
    payment_method_id: str,
    attempt: str,
    redis: ArqRedis,
) -> PaymentMethod:
    async with sessionmaker() as session:
        card = await repository.get_for_customer(session, customer.id, payment_method_id)
    if card is None or customer.stripe_customer_id is None:
        raise PaymentMethodNotFound()
    if not card.is_default:
        await _make_default_on_stripe(
            gateway,
            customer=customer,
            stripe_customer_id=customer.stripe_customer_id,
            payment_method_id=payment_method_id,
            attempt=attempt,
        )
        async with sessionmaker.begin() as session:
            await repository.set_default(
                session, customer_id=customer.id, stripe_payment_method_id=payment_method_id
            )
        card.is_default = True
        await _retry_dunned_payment(redis, customer, payment_method_id, attempt)
    return card


async def detach_payment_method(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    customer: Customer,
    payment_method_id: str,
    attempt: str,
) -> None:
    """Remove a card. The only card of a live subscription stays: renewals would fail."""
    async with sessionmaker() as session:
        cards = await repository.list_for_customer(session, customer.id)
        card_required = await repository.customer_holds_live_subscription(session, customer.id)
    card = next((c for c in cards if c.stripe_payment_method_id == payment_method_id), None)
    if card is None or customer.stripe_customer_id is None:
        raise PaymentMethodNotFound()
    others = [c for c in cards if c.stripe_payment_method_id != payment_method_id]
    if not others and card_required:
        raise LastPaymentMethod()
    if card.is_default and others:
        await _make_default_on_stripe(
            gateway,
            customer=customer,
            stripe_customer_id=customer.stripe_customer_id,
            payment_method_id=others[0].stripe_payment_method_id,
            attempt=attempt,
        )
    held = await gateway.find_payment_method(payment_method_id)
    if held is not None and held.customer_id == customer.stripe_customer_id:
        await gateway.detach_payment_method(
            payment_method_id=payment_method_id, idempotency_key=f"detach:{payment_method_id}"
        )
    # Otherwise Stripe no longer holds the card for this customer (detached or deleted there
    # before a webhook said so), and refuses to detach it: only the mirror is left to remove.
    async with sessionmaker.begin() as session:
        mirrored = await repository.get_for_customer(session, customer.id, payment_method_id)
        if mirrored is not None:
            await repository.delete_card(session, mirrored)
        if card.is_default and others:
            await repository.set_default(
                session,
                customer_id=customer.id,
                stripe_payment_method_id=others[0].stripe_payment_method_id,
            )


async def create_setup_intent(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    customer: Customer,
    attempt: str,
) -> str:
    """A SetupIntent client secret: Stripe.js collects and authenticates a new card with it.

    Each attempt gets its own SetupIntent (one is used up when a card is confirmed with it);
    a client retry with its Idempotency-Key gets the same one back.
    """
    stripe_customer_id = await customers_service.ensure_stripe_customer(
        sessionmaker=sessionmaker, gateway=gateway, customer=customer
    )
    return await gateway.create_setup_intent(
        customer_id=stripe_customer_id, idempotency_key=f"setup-intent:{customer.id}:{attempt}"
    )


# Mirroring Stripe's cards (webhook handlers, reconcile, import), in the caller's transaction.


async def mirror_card(session: AsyncSession, *, customer_id: int, card: PaymentMethodCard) -> None:
    """Insert or refresh the card as Stripe holds it."""
    await repository.upsert_card(session, customer_id=customer_id, card=card)


async def mirror_default_card(
    session: AsyncSession, *, customer_id: int, stripe_payment_method_id: str
) -> None:
    """Make the card Stripe charges the default one here too."""
    await repository.set_default(
        session, customer_id=customer_id, stripe_payment_method_id=stripe_payment_method_id
    )


async def forget_card(session: AsyncSession, *, stripe_payment_method_id: str) -> None:
    """The card was detached on Stripe."""
    await repository.delete_by_stripe_id(session, stripe_payment_method_id)


async def mirrored_cards_by_customer(session: AsyncSession) -> dict[int, list[PaymentMethod]]:
    """Every mirrored card, by account (reconcile compares them with Stripe's)."""
    cards: dict[int, list[PaymentMethod]] = {}
    for card in await repository.list_all(session):
        cards.setdefault(card.customer_id, []).append(card)
    return cards


async def list_mirrored_cards(session: AsyncSession, customer_id: int) -> Sequence[PaymentMethod]:
    return await repository.list_for_customer(session, customer_id)


async def forget_customer_card(
    session: AsyncSession, *, customer_id: int, stripe_payment_method_id: str
) -> bool:
    """Remove one account's mirrored card; False when it had no such card."""
    card = await repository.get_for_customer(session, customer_id, stripe_payment_method_id)
    if card is None:
        return False
    await repository.delete_card(session, card)
    return True


async def clear_default_card(session: AsyncSession, *, customer_id: int) -> None:
    """Stripe's default is no card (or none at all): no mirrored card is the default."""
    await repository.clear_default(session, customer_id=customer_id)


async def default_card_id(session: AsyncSession, *, customer_id: int) -> str | None:
    """The Stripe id of the customer's default card as mirrored here, if any."""
    cards = await repository.list_for_customer(session, customer_id)
    return next((card.stripe_payment_method_id for card in cards if card.is_default), None)
