"""The gateway under test and the Stripe fake it talks to."""

import pytest

from app.core.config import Settings
from app.stripe_gateway.client import StripeGateway
from tests.stripe.fake import FakeStripe


@pytest.fixture
def gateway() -> StripeGateway:
    settings = Settings(
        _env_file=None,
        ENVIRONMENT="test",
        STRIPE_SECRET_KEY="sk_test_123",
        STRIPE_LIVE_MODE=False,
        STRIPE_API_BASE=None,
        STRIPE_AUTOMATIC_TAX=False,
        STRIPE_MAX_NETWORK_RETRIES=0,
    )
    return StripeGateway(settings)


@pytest.fixture
def fake(fake_stripe: FakeStripe) -> FakeStripe:
    """The fake with a catalog: a monthly Pro price (2900), a yearly one, a Business (9900)."""
    fake_stripe.add_product(id="plan_pro", name="Pro")
    fake_stripe.add_product(id="plan_business", name="Business")
    fake_stripe.add_price(id="price_pro_month", product="plan_pro", unit_amount=2900)
    fake_stripe.add_price(
        id="price_pro_year", product="plan_pro", unit_amount=29000, interval="year"
    )
    fake_stripe.add_price(id="price_business_month", product="plan_business", unit_amount=9900)
    return fake_stripe
