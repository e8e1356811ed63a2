"""Repairing drift from what `find_drift` read: one short transaction per object, under
the object's webhook watermark, so a repair never overwrites state a newer event applied
meanwhile, and an older event processed after it re-fetches from Stripe instead of undoing
it."""

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import service as billing_history_service
from app.payment_methods import service as payment_methods_service
from app.plans import service as plans_service
from app.stripe_gateway.types import InvoiceState, SubscriptionState
from app.stripe_sync.drift import CustomerCards, DriftCheck
from app.subscriptions import service as subscriptions_service
from app.webhooks import service as webhooks_service


async def _repair_subscription(
    session: AsyncSession, state: SubscriptionState, as_of: datetime, changed_at: datetime | None
) -> bool:
    if not await webhooks_service.claim_watermark(
        session, object_type="subscription", object_id=state.id, as_of=as_of
    ):
        return False
    subscription = await subscriptions_service.find_by_stripe_id(session, state.id, lock=True)
    if subscription is None:
        return False
    # Dated by Stripe's record of the change when there is one (`find_drift`), so the usage
    # month before it is not priced on the new plan; else by the item's period start.
    await subscriptions_service.apply_state(
        session, subscription, state, observed_at=changed_at, now=as_of
    )
    return True


async def _repair_invoice(
    session: AsyncSession, customer_id: int, invoice: InvoiceState, as_of: datetime
) -> bool:
    if not await webhooks_service.claim_watermark(
        session, object_type="invoice", object_id=invoice.id, as_of=as_of
    ):
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


async def _repair_cards(session: AsyncSession, cards: CustomerCards, as_of: datetime) -> bool:
    changed = False
    # Watermarks in id order: two repairs of one customer lock them in the same order.
    for card in sorted(cards.to_upsert, key=lambda card: card.id):
        if await webhooks_service.claim_watermark(
            session, object_type="payment_method", object_id=card.id, as_of=as_of
        ):
            await payment_methods_service.mirror_card(
                session, customer_id=cards.customer_id, card=card
            )
            changed = True
    for card_id in sorted(cards.to_delete):
        if await webhooks_service.claim_watermark(
            session, object_type="payment_method", object_id=card_id, as_of=as_of
        ) and await payment_methods_service.forget_customer_card(
            session, customer_id=cards.customer_id, stripe_payment_method_id=card_id
        ):
            changed = True
    if cards.default_differs:
        if cards.default_id is not None:
            await payment_methods_service.mirror_default_card(
                session, customer_id=cards.customer_id, stripe_payment_method_id=cards.default_id
            )
        else:
            await payment_methods_service.clear_default_card(session, customer_id=cards.customer_id)
        changed = True
    return changed


async def repair_drift(*, sessionmaker: async_sessionmaker[AsyncSession], check: DriftCheck) -> int:
    """Bring local state in line with what `find_drift` read from Stripe, one short
    transaction per object; returns how many objects were changed."""
    repaired = 0
    for state in check.subscriptions:
        async with sessionmaker.begin() as session:
            repaired += await _repair_subscription(
                session, state, check.fetched_at, check.plan_changed_at.get(state.id)
            )
    for customer_id, invoice in check.invoices:
        async with sessionmaker.begin() as session:
            repaired += await _repair_invoice(session, customer_id, invoice, check.fetched_at)
    for cards in check.cards:
        async with sessionmaker.begin() as session:
            repaired += await _repair_cards(session, cards, check.fetched_at)
    return repaired
