from collections.abc import Sequence

from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer, PaymentMethod, Subscription
from app.models.subscription import LIVE_STATUSES
from app.stripe_gateway.types import PaymentMethodCard


async def list_for_customer(session: AsyncSession, customer_id: int) -> Sequence[PaymentMethod]:
    return (
        await session.scalars(
            select(PaymentMethod)
            .where(PaymentMethod.customer_id == customer_id)
            .order_by(PaymentMethod.is_default.desc(), PaymentMethod.id)
        )
    ).all()


async def get_for_customer(
    session: AsyncSession, customer_id: int, stripe_payment_method_id: str
) -> PaymentMethod | None:
    return await session.scalar(
        select(PaymentMethod).where(
            PaymentMethod.customer_id == customer_id,
            PaymentMethod.stripe_payment_method_id == stripe_payment_method_id,
        )
    )


async def upsert_card(session: AsyncSession, *, customer_id: int, card: PaymentMethodCard) -> None:
    # Keyed by Stripe's id: the same card mirrored twice (a retry, a webhook) is one row.
    values = {
        "customer_id": customer_id,
        "stripe_payment_method_id": card.id,
        "brand": card.brand,
        "last4": card.last4,
        "exp_month": card.exp_month,
        "exp_year": card.exp_year,
    }
    statement = insert(PaymentMethod).values(**values)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[PaymentMethod.stripe_payment_method_id],
            set_={name: statement.excluded[name] for name in values},
        )
    )


async def set_default(
    session: AsyncSession, *, customer_id: int, stripe_payment_method_id: str
) -> None:
    # Two default changes of one customer at once would each clear, then each set: serialize
    # them on the customer's row. NO KEY UPDATE, because inserting a card already holds KEY
    # SHARE on that row (its foreign key), and FOR UPDATE would deadlock against it.
    # Clear first: the partial unique index allows one default at any moment.
    await session.execute(
        select(Customer.id).where(Customer.id == customer_id).with_for_update(key_share=True)
    )
    await session.execute(
        update(PaymentMethod)
        .where(PaymentMethod.customer_id == customer_id, PaymentMethod.is_default.is_(True))
        .values(is_default=False)
    )
    await session.execute(
        update(PaymentMethod)
        .where(
            PaymentMethod.customer_id == customer_id,
            PaymentMethod.stripe_payment_method_id == stripe_payment_method_id,
        )
        .values(is_default=True)
    )


async def delete_card(session: AsyncSession, payment_method: PaymentMethod) -> None:
    await session.delete(payment_method)
    await session.flush()


async def customer_holds_live_subscription(session: AsyncSession, customer_id: int) -> bool:
    """Whether the customer's renewals need a card. A read of `subscriptions` (owned by the
    subscriptions domain, which builds on this one: subscribe attaches a card here), kept to
    one EXISTS so payment methods need not import the layer above them."""
    return bool(
        await session.scalar(
            select(
                exists().where(
                    Subscription.customer_id == customer_id,
                    Subscription.status.in_(LIVE_STATUSES),
                )
            )
        )
    )


async def delete_by_stripe_id(session: AsyncSession, stripe_payment_method_id: str) -> None:
    await session.execute(
        delete(PaymentMethod).where(
            PaymentMethod.stripe_payment_method_id == stripe_payment_method_id
        )
    )


async def list_all(session: AsyncSession) -> Sequence[PaymentMethod]:
    return (await session.scalars(select(PaymentMethod).order_by(PaymentMethod.id))).all()


async def clear_default(session: AsyncSession, *, customer_id: int) -> None:
    await session.execute(
        update(PaymentMethod)
        .where(PaymentMethod.customer_id == customer_id, PaymentMethod.is_default.is_(True))
        .values(is_default=False)
    )
