"""`billing create-stripe-products` and `billing check-stripe` against the fake Stripe."""

import asyncio

import pytest
import stripe as stripe_python
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from typer.testing import CliRunner, Result

from app.cli import app as cli
from app.core.config import Settings
from app.models import SubscriptionPlan
from tests.factories import create_plan
from tests.stripe.fake import FakeStripe


async def invoke(*arguments: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(arguments))


@pytest.fixture
def environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_123")
    monkeypatch.setenv("STRIPE_MAX_NETWORK_RETRIES", "0")
    return settings


async def test_catalog_sync_creates_products_and_prices_once(
    environment: Settings, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    await create_plan(session, slug="starter", monthly_price=4_900, yearly_price=49_000)

    first = await invoke("create-stripe-products")

    assert first.exit_code == 0, first.output
    [product] = fake_stripe.calls("POST", "/v1/products")
    assert product.params["id"] == "billing_plan_starter"
    assert product.params["tax_code"] == "txcd_10103001"
    prices = fake_stripe.calls("POST", "/v1/prices")
    assert sorted(p.params["lookup_key"] for p in prices) == [
        "plan_starter_monthly_usd",
        "plan_starter_yearly_usd",
    ]
    assert {p.params["tax_behavior"] for p in prices} == {"exclusive"}
    assert {p.params["unit_amount"] for p in prices} == {"4900", "49000"}
    session.expire_all()
    plan = await session.scalar(select(SubscriptionPlan))
    assert plan is not None and plan.stripe_monthly_price_id and plan.stripe_yearly_price_id

    second = await invoke("create-stripe-products")

    assert second.exit_code == 0, second.output
    assert "nothing created or changed" in second.output
    assert len(fake_stripe.calls("POST", "/v1/products")) == 1
    assert len(fake_stripe.calls("POST", "/v1/prices")) == 2


async def test_a_changed_price_needs_force_update_which_replaces_and_archives(
    environment: Settings, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    plan = await create_plan(session, slug="starter", monthly_price=4_900, yearly_price=49_000)
    await invoke("create-stripe-products")
    old_monthly = await session.scalar(select(SubscriptionPlan.stripe_monthly_price_id))
    assert old_monthly is not None
    plan.monthly_price = 5_900
    session.add(plan)
    await session.commit()

    report_only = await invoke("create-stripe-products")

    assert "monthly price is 4900 on Stripe, 5900 here" in report_only.output
    assert len(fake_stripe.calls("POST", "/v1/prices")) == 2

    forced = await invoke("create-stripe-products", "--force-update")

    assert forced.exit_code == 0, forced.output
    new_price = fake_stripe.calls("POST", "/v1/prices")[-1]
    assert new_price.params["unit_amount"] == "5900"
    assert new_price.params["transfer_lookup_key"] == "true"
    assert fake_stripe.prices[old_monthly]["active"] is False
    session.expire_all()
    new_monthly = await session.scalar(select(SubscriptionPlan.stripe_monthly_price_id))
    assert new_monthly is not None
    assert new_monthly != old_monthly and fake_stripe.prices[new_monthly]["unit_amount"] == 5_900


async def test_check_stripe_reports_mode_account_catalog_and_webhook(
    environment: Settings, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    await create_plan(session, slug="starter")
    fake_stripe.add_webhook_endpoint(
        url="https://billing.acme.test/subscriptions/api/stripe-webhook/",
        api_version=stripe_python.api_version,
        enabled_events=["*"],
    )

    before = await invoke("check-stripe")
    await invoke("create-stripe-products")
    after = await invoke("check-stripe")

    assert before.exit_code == 0, before.output
    assert "key mode: test" in before.output
    assert "catalog: out of sync" in before.output
    assert "pinned version" in before.output
    assert "catalog: in sync" in after.output
    assert fake_stripe.calls("POST", "/v1/products")  # only the explicit sync created them
    assert len(fake_stripe.calls("POST", "/v1/products")) == 1


async def test_a_price_changed_and_changed_back_within_a_day_gets_a_live_price(
    environment: Settings, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    plan = await create_plan(session, slug="starter", monthly_price=4_900, yearly_price=49_000)
    await invoke("create-stripe-products")

    for amount in (5_900, 4_900):
        plan.monthly_price = amount
        session.add(plan)
        await session.commit()
        result = await invoke("create-stripe-products", "--force-update")
        assert result.exit_code == 0, result.output

    session.expire_all()
    monthly = await session.scalar(select(SubscriptionPlan.stripe_monthly_price_id))
    assert monthly is not None
    assert fake_stripe.prices[monthly]["active"] is True
    assert fake_stripe.prices[monthly]["unit_amount"] == 4_900
    assert fake_stripe.prices[monthly]["lookup_key"] == "plan_starter_monthly_usd"
