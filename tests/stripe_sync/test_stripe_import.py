"""`billing import-stripe` against the fake Stripe: the old module's customers, subscriptions
and cards adopted once, matched by metadata or email."""

import asyncio
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from stripe import params as stripe_params
from typer.testing import CliRunner, Result

from app.cli import app as cli
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.models import Customer, PaymentMethod, Subscription
from app.stripe_gateway.client import StripeGateway
from app.stripe_sync.stripe_import import import_from_stripe
from tests.conftest import TEST_NOW
from tests.factories import create_customer, create_synced_plan
from tests.stripe.fake import FakeStripe
from tests.stripe.wire import Params, StripeObject, list_object

# Small pages, so the import has to follow `has_more` through all of them.
CUSTOMERS_PER_PAGE = 2


@pytest.fixture
def fake_stripe(fake_stripe: FakeStripe) -> FakeStripe:
    """The suite's fake, with GET /v1/customers paginated by `starting_after`."""

    def list_customers(params: Params) -> StripeObject:
        found = [
            customer
            for customer in reversed(fake_stripe.customers.values())
            if not params.get("email") or customer.get("email") == params["email"]
        ]
        after = params.get("starting_after")
        if after:
            found = found[[customer["id"] for customer in found].index(after) + 1 :]
        return list_object("/v1/customers", found, {**params, "limit": CUSTOMERS_PER_PAGE})

    fake_stripe.add_route("GET", r"/v1/customers", stripe_params.CustomerListParams, list_customers)
    return fake_stripe


@pytest.fixture
def environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_123")
    monkeypatch.setenv("STRIPE_MAX_NETWORK_RETRIES", "0")
    return settings


async def invoke(*arguments: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(arguments))


def _legacy_customer(
    fake: FakeStripe, *, email: str, card: str | None = None, **metadata: str
) -> StripeObject:
    """A customer of the old module, with its default card."""
    customer = fake.add_customer(email=email, metadata=metadata)
    if card is not None:
        fake.add_payment_method(card, customer=customer["id"])
        customer["invoice_settings"]["default_payment_method"] = card
    return customer


async def _subscribe_on_stripe(
    gateway: StripeGateway, customer: StripeObject, price_id: str, key: str
) -> str:
    state = await gateway.create_subscription(
        customer_id=customer["id"],
        items=[(price_id, 1)],
        trial_days=0,
        metadata={},
        idempotency_key=key,
    )
    return state.id


async def _state(session: AsyncSession) -> dict[str, Any]:
    def fresh(model: Any) -> Any:
        return select(model).order_by(model.id).execution_options(populate_existing=True)

    customers = (await session.scalars(fresh(Customer))).all()
    return {
        "customers": [(c.dashboard_user_id, c.email, c.stripe_customer_id) for c in customers],
        "subscriptions": [
            (s.customer_id, s.stripe_subscription_id, s.plan_id, s.billing_cycle, s.status)
            for s in (await session.scalars(fresh(Subscription))).all()
        ],
        "cards": [
            (p.customer_id, p.stripe_payment_method_id, p.brand, p.last4, p.is_default)
            for p in (await session.scalars(fresh(PaymentMethod))).all()
        ],
    }


async def test_import_adopts_by_metadata_and_email_once_and_reports_what_it_could_not(
    environment: Settings, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    assert plan.stripe_monthly_price_id is not None
    unknown_price = fake_stripe.add_price(product="prod_legacy", unit_amount=4_900)
    by_email_account = await create_customer(session, dashboard_user_id="7", email="ops@acme.test")
    gateway = StripeGateway(environment)

    by_metadata = _legacy_customer(
        fake_stripe, email="owner@globex.test", card="pm_legacy_globex", dashboard_user_id="42"
    )
    older = await _subscribe_on_stripe(
        gateway, by_metadata, plan.stripe_monthly_price_id, "legacy-1"
    )
    newer = await _subscribe_on_stripe(
        gateway, by_metadata, plan.stripe_monthly_price_id, "legacy-2"
    )
    fake_stripe.subscriptions[older]["created"] = fake_stripe.now - 86_400
    # Stripe keeps the case an address was given in.
    by_email = _legacy_customer(fake_stripe, email="Ops@Acme.test", card="pm_legacy_acme")
    on_unknown_price = await _subscribe_on_stripe(
        gateway, by_email, unknown_price["id"], "legacy-3"
    )
    unmatched = _legacy_customer(fake_stripe, email="nobody@initech.test")

    first = await invoke("import-stripe")

    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [
        f"adopted customer {by_email['id']}: account 7 (by email)",
        "adopted card pm_legacy_acme: account 7 (visa 4242, default)",
        f"adopted customer {by_metadata['id']}: account 42 (by metadata, account created)",
        f"adopted subscription {newer}: account 42 (growth monthly, active)",
        "adopted card pm_legacy_globex: account 42 (visa 4242, default)",
        f"not adopted subscription {on_unknown_price}: no plan has its price "
        f"({unknown_price['id']})",
        f"not adopted subscription {older}: account 42 already has the live subscription {newer}",
        f"unmatched customer {unmatched['id']}: nobody@initech.test: no account with its "
        "dashboard_user_id or email",
        "adopted 2 customers, 1 subscriptions, 2 cards; 2 not adopted; 1 unmatched",
    ]
    customer_pages = fake_stripe.calls("GET", "/v1/customers")
    assert len(customer_pages) == 2
    assert customer_pages[1].params["starting_after"] == by_email["id"]

    state = await _state(session)
    assert state["customers"] == [
        ("7", "ops@acme.test", by_email["id"]),
        ("42", "owner@globex.test", by_metadata["id"]),
    ]
    account_42 = await session.scalar(select(Customer).where(Customer.dashboard_user_id == "42"))
    assert account_42 is not None
    assert state["subscriptions"] == [(account_42.id, newer, plan.id, "monthly", "active")]
    local = await session.scalar(select(Subscription))
    assert local is not None and local.current_period_end is not None
    assert state["cards"] == [
        (by_email_account.id, "pm_legacy_acme", "visa", "4242", True),
        (account_42.id, "pm_legacy_globex", "visa", "4242", True),
    ]

    second = await invoke("import-stripe")

    assert second.exit_code == 0, second.output
    assert not any(line.startswith("adopted ") for line in second.output.splitlines()[:-1])
    assert second.output.splitlines()[-1] == (
        "adopted 0 customers, 0 subscriptions, 0 cards; 2 not adopted; 1 unmatched"
    )
    assert await _state(session) == state
    assert [request.method for request in fake_stripe.requests if request.method != "GET"] == [
        "POST",
        "POST",
        "POST",
    ]


async def test_a_legacy_customer_of_an_account_already_on_another_stripe_customer_is_left_alone(
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    current = fake_stripe.add_customer(
        email="owner@globex.test", metadata={"dashboard_user_id": "42"}
    )
    await create_customer(session, dashboard_user_id="42", stripe_customer_id=current["id"])
    legacy = _legacy_customer(
        fake_stripe, email="owner@globex.test", card="pm_legacy_globex", dashboard_user_id="42"
    )

    report = await import_from_stripe(
        sessionmaker=sessionmaker, gateway=StripeGateway(settings), clock=FrozenClock(TEST_NOW)
    )

    assert report.adopted == []
    assert [(note.stripe_id, note.detail) for note in report.not_adopted] == [
        (legacy["id"], f"account 42 is linked to {current['id']}")
    ]
    assert (await _state(session))["cards"] == []
