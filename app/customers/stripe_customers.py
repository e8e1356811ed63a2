"""The Stripe customer behind a billing account: adopted if it exists, created once if not."""

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.customers import repository
from app.models import Customer
from app.stripe_gateway.client import StripeGateway


async def ensure_stripe_customer(
    *,
    sessionmaker: async_sessionmaker[AsyncSession],
    gateway: StripeGateway,
    customer: Customer,
) -> str:
    """The account's Stripe customer id, finding or creating the Stripe customer first.

    Customers of the old billing module already exist on Stripe: they are found by our
    `dashboard_user_id` metadata, then by email, and adopted instead of duplicated. A new one
    is created with an idempotency key of our account id, so concurrent first calls of one
    user create one Stripe customer; the database keeps the first id recorded.
    """
    if customer.stripe_customer_id:
        return customer.stripe_customer_id
    stripe_customer_id = await gateway.find_customer(
        dashboard_user_id=customer.dashboard_user_id, email=customer.email
    )
    if stripe_customer_id is None:
        stripe_customer_id = await gateway.create_customer(
            dashboard_user_id=customer.dashboard_user_id,
            email=customer.email,
            name=customer.name,
            idempotency_key=f"customer:{customer.id}",
        )
    else:
        await gateway.tag_customer(
            customer_id=stripe_customer_id,
            dashboard_user_id=customer.dashboard_user_id,
            idempotency_key=f"adopt-customer:{customer.id}:{stripe_customer_id}",
        )
    async with sessionmaker.begin() as session:
        recorded = await repository.set_stripe_customer_id_if_missing(
            session, customer_id=customer.id, stripe_customer_id=stripe_customer_id
        )
    customer.stripe_customer_id = recorded
    return recorded
