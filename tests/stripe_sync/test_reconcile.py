"""`billing reconcile` and its nightly job against the fake Stripe: catching up on events
never delivered, finding drift, repairing it from Stripe, alerting on it."""

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from stripe import params as stripe_params
from typer.testing import CliRunner, Result

from app.billing_history import service as billing_history_service
from app.cli import app as cli
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.periods import add_months
from app.models import (
    BillingHistory,
    OperatorAlert,
    OverageCharge,
    PaymentMethod,
    StripeEvent,
    UsagePeriodTotals,
)
from app.stripe_gateway.parsing import parse_invoice
from app.stripe_sync.reconcile import reconcile_with_stripe
from app.stripe_sync.tasks import reconcile_stripe_nightly
from app.usage.tasks import close_ended_usage_periods
from tests.conftest import TokenFactory
from tests.factories import create_synced_plan, subscribe_through_api
from tests.running_jobs import app_job_ctx
from tests.stripe.fake import FakeStripe
from tests.stripe.wire import Params, StripeObject, list_object
from tests.webhooks.helpers import local_subscription, post_event, run_worker

# --- the fake's missing list endpoints -------------------------------------------------


def _page(url: str, newest_first: list[StripeObject], params: Params) -> StripeObject:
    after = params.get("starting_after")
    if after:
        ids = [obj["id"] for obj in newest_first]
        newest_first = newest_first[ids.index(after) + 1 :]
    return list_object(url, newest_first, params)


@pytest.fixture
def stripe_event_log() -> list[StripeObject]:
    """The events Stripe keeps (GET /v1/events), whether or not they were delivered."""
    return []


@pytest.fixture
def fake_stripe(fake_stripe: FakeStripe, stripe_event_log: list[StripeObject]) -> FakeStripe:
    """The suite's fake, with GET /v1/events and GET /v1/invoices."""

    def list_events(params: Params) -> StripeObject:
        since = int((params.get("created") or {}).get("gte") or 0)
        found = sorted(
            (event for event in stripe_event_log if event["created"] >= since),
            key=lambda event: -event["created"],
        )
        return _page("/v1/events", found, params)

    def list_invoices(params: Params) -> StripeObject:
        found = [
            invoice
            for invoice in reversed(fake_stripe.invoices.values())
            if invoice["customer"] == params.get("customer")
        ]
        return _page("/v1/invoices", found, params)

    fake_stripe.add_route("GET", r"/v1/events", stripe_params.EventListParams, list_events)
    fake_stripe.add_route("GET", r"/v1/invoices", stripe_params.InvoiceListParams, list_invoices)
    return fake_stripe


# --- helpers ---------------------------------------------------------------------------


async def invoke(*arguments: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(arguments))


@pytest.fixture
def environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_123")
    monkeypatch.setenv("STRIPE_MAX_NETWORK_RETRIES", "0")
    return settings


async def _cards(session: AsyncSession) -> list[tuple[str, bool]]:
    query = (
        select(PaymentMethod)
        .order_by(PaymentMethod.stripe_payment_method_id)
        .execution_options(populate_existing=True)
    )
    return [(row.stripe_payment_method_id, row.is_default) for row in await session.scalars(query)]


# --- tests -----------------------------------------------------------------------------


async def test_reconcile_prints_drift_and_fix_repairs_status_and_a_missing_default_card(
    environment: Settings,
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    stripe_subscription["status"] = "past_due"
    customer_id = stripe_subscription["customer"]
    fake_stripe.add_payment_method(
        "pm_card_mastercard", customer=customer_id, brand="mastercard", last4="4444"
    )
    fake_stripe.customers[customer_id]["invoice_settings"]["default_payment_method"] = (
        "pm_card_mastercard"
    )

    report_only = await invoke("reconcile", "--since", "2026-11-20")

    assert report_only.exit_code == 1, report_only.output
    lines = report_only.output.splitlines()
    assert lines[0].startswith("events: 0 on Stripe since 2026-11-20T00:00:00+00:00, 0 new")
    assert lines[1] == "drift: 3"
    assert lines[2].split() == ["OBJECT", "FIELD", "LOCAL", "STRIPE"]
    rows = [line.split() for line in lines[3:6]]
    assert ["subscription", stripe_subscription["id"], "status", "active", "past_due"] in rows
    assert [
        "customer",
        "42",
        "card",
        "pm_card_mastercard",
        "missing",
        "mastercard",
        "4444",
        "12/2030",
    ] in rows
    assert ["customer", "42", "default", "card", "pm_card_visa", "pm_card_mastercard"] in rows
    assert lines[-1] == "run with --fix to repair local state from Stripe"
    [events_request] = fake_stripe.calls("GET", "/v1/events")
    since = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
    assert events_request.params["created"] == {"gte": str(since)}
    assert (await local_subscription(session)).status == "active"

    fixed = await invoke("reconcile", "--fix")

    assert fixed.exit_code == 0, fixed.output
    assert "repaired: 2 objects" in fixed.output
    assert fixed.output.splitlines()[-1] == "drift remaining: none"
    assert (await local_subscription(session)).status == "past_due"
    assert await _cards(session) == [("pm_card_mastercard", True), ("pm_card_visa", False)]

    again = await invoke("reconcile")

    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-1] == "drift: none"


async def test_catch_up_stores_and_processes_an_event_that_was_never_delivered(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    stripe_event_log: list[StripeObject],
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    too_old = fake_stripe.event("customer.subscription.updated", stripe_subscription)
    too_old["created"] = fake_stripe.now - 3_600
    delivered = fake_stripe.event("customer.subscription.updated", stripe_subscription)
    delivered["created"] = fake_stripe.now - 120
    assert (await post_event(client, delivered)).status_code == 200
    assert (await run_worker(app, delivered["id"])).outcome == "processed"
    stripe_subscription["status"] = "past_due"
    missed = fake_stripe.event("customer.subscription.updated", copy.deepcopy(stripe_subscription))
    missed["created"] = fake_stripe.now - 60
    stripe_event_log.extend([too_old, delivered, missed])

    async def reconcile() -> Any:
        return await reconcile_with_stripe(
            sessionmaker=app.state.sessionmaker,
            gateway=app.state.stripe_gateway,
            clock=clock,
            fix=False,
            since=None,
            max_attempts=3,
        )

    report = await reconcile()

    # Listed from the newest stored event's second on: the delivered one is found by id.
    assert fake_stripe.calls("GET", "/v1/events")[0].params["created"] == {
        "gte": str(delivered["created"])
    }
    assert (report.catch_up.listed, report.catch_up.stored) == (2, 1)
    assert report.catch_up.outcomes == {"processed": 1}
    assert report.remaining == []
    assert (await local_subscription(session)).status == "past_due"
    stored = await session.scalar(
        select(StripeEvent).where(StripeEvent.stripe_event_id == missed["id"])
    )
    assert stored is not None and stored.status == "processed" and stored.payload == missed
    assert await session.scalar(select(func.count()).select_from(StripeEvent)) == 2

    second = await reconcile()

    assert (second.catch_up.listed, second.catch_up.stored) == (1, 0)


async def test_an_invoice_recorded_in_an_older_state_is_repaired_from_stripe(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    invoice = fake_stripe.invoices[stripe_subscription["latest_invoice"]]
    assert invoice["status"] == "paid"
    local = await local_subscription(session)
    await billing_history_service.record_invoice(
        session,
        invoice=parse_invoice({**copy.deepcopy(invoice), "status": "open"}),
        customer_id=local.customer_id,
        subscription_id=local.id,
        add_on_price_ids=set(),
    )
    await session.commit()

    report = await reconcile_with_stripe(
        sessionmaker=app.state.sessionmaker,
        gateway=app.state.stripe_gateway,
        clock=clock,
        fix=True,
        since=None,
        max_attempts=3,
    )

    assert [(d.object, d.field, d.local, d.stripe) for d in report.found] == [
        (f"invoice {invoice['id']}", "status", "open", "paid")
    ]
    assert (report.repaired, report.remaining) == (1, [])
    row = await session.scalar(select(BillingHistory).execution_options(populate_existing=True))
    assert row is not None and (row.status, row.subscription_id) == ("paid", local.id)


async def test_nightly_job_raises_one_alert_a_day_on_drift_and_repairs_nothing(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    settings: Settings,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    ctx = app_job_ctx(app)
    alerts = select(OperatorAlert).where(OperatorAlert.kind == "stripe_drift")

    assert await reconcile_stripe_nightly(ctx) == 0
    assert (await session.scalars(alerts)).all() == []

    stripe_subscription["cancel_at_period_end"] = True
    assert await reconcile_stripe_nightly(ctx) == 1
    assert await reconcile_stripe_nightly(ctx) == 1

    [alert] = (await session.scalars(alerts)).all()
    assert alert.dedupe_key == "stripe_drift:2026-11-25"
    assert alert.details["count"] == 1
    assert alert.details["drift"] == [
        {
            "object": f"subscription {stripe_subscription['id']}",
            "field": "cancel_at_period_end",
            "local": "false",
            "stripe": "true",
        }
    ]
    assert (await local_subscription(session)).cancel_at_period_end is False


async def test_a_plan_change_repaired_by_reconcile_is_dated_when_stripe_made_it(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(
        client, make_token, session, fake_stripe, billing_cycle="yearly"
    )
    subscription = await local_subscription(session)
    anchor = subscription.billing_cycle_anchor
    assert anchor is not None
    # The first month of the year: 2,100 minutes, 100 over the plan's 2,000.
    session.add(
        UsagePeriodTotals(
            subscription_id=subscription.id,
            period_start=anchor,
            period_end=add_months(anchor, 1),
            minutes_used=Decimal(2_100),
            peak_agents=0,
            record_count=1,
        )
    )
    await session.commit()
    bigger = await create_synced_plan(
        session, fake_stripe, slug="professional", included_minutes=5_000, yearly_price=199_000
    )
    # Half an hour into the second month the subscription is upgraded on Stripe, and that
    # event is lost (and gone from GET /v1/events by the time anyone looks).
    changed_at = add_months(anchor, 1) + timedelta(minutes=30)
    fake_stripe.now = int(changed_at.timestamp())
    clock.set(changed_at)
    assert bigger.stripe_yearly_price_id is not None
    await app.state.stripe_gateway.update_subscription(
        subscription_id=stripe_subscription["id"],
        params={
            "items": [
                {"id": subscription.stripe_plan_item_id, "price": bigger.stripe_yearly_price_id}
            ],
            "proration_behavior": "always_invoice",
            "payment_behavior": "pending_if_incomplete",
        },
        idempotency_key="upgrade-made-elsewhere",
    )

    clock.set(changed_at + timedelta(hours=2))
    report = await reconcile_with_stripe(
        sessionmaker=app.state.sessionmaker,
        gateway=app.state.stripe_gateway,
        clock=clock,
        fix=True,
        since=None,
        max_attempts=3,
    )
    assert report.remaining == []
    assert (await local_subscription(session)).plan_id == bigger.id
    # The first month closes (the cron: a yearly subscription's month has no invoice).
    assert await close_ended_usage_periods(app_job_ctx(app)) == 1

    # It ran on the old plan: 100 min x 2.5 = 250. Dated at the yearly item's start, the
    # upgrade would have priced it on the new plan's 5,000 minutes: nothing.
    [charge] = (await session.scalars(select(OverageCharge))).all()
    assert (charge.period_start, charge.minutes_over, charge.amount) == (anchor, Decimal(100), 250)
