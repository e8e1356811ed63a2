"""Overage charges on Stripe invoices: the renewal draft, a finalized invoice, late records,
a cancellation, yearly subscriptions, and Stripe failing in between."""

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.core.periods import add_months
from app.models import (
    BillingHistory,
    OperatorAlert,
    OverageCharge,
    Subscription,
    UsagePeriodTotals,
    UsageRecord,
)
from app.stripe_gateway.parsing import parse_invoice
from app.usage.overage_billing import record_invoice_overage
from app.usage.tasks import (
    bill_ended_subscription_usage,
    bill_overage_adjustments,
    bill_overage_charge,
    close_ended_usage_periods,
    sweep_overage_charges,
)
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_plan, subscribe_through_api
from tests.invoices.helpers import pdf_text
from tests.running_jobs import app_job_ctx, run_queued_jobs
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import deliver, local_subscription, post_event, run_worker

SUBSCRIBE = "/subscriptions/api/subscribe/"


async def _usage(
    session: AsyncSession,
    subscription: Subscription,
    *,
    minutes: str,
    agents: int = 0,
    start: datetime | None = None,
) -> UsagePeriodTotals:
    """The counters of the subscription's first usage period (default), as ingestion keeps
    them."""
    assert subscription.billing_cycle_anchor is not None
    period_start = start or subscription.billing_cycle_anchor
    totals = UsagePeriodTotals(
        subscription_id=subscription.id,
        period_start=period_start,
        period_end=add_months(period_start, 1),
        minutes_used=Decimal(minutes),
        peak_agents=agents,
        record_count=1,
    )
    session.add(totals)
    await session.commit()
    return totals


async def _deliver(
    client: httpx.AsyncClient, app: FastAPI, event: dict[str, Any], clock: FrozenClock
) -> str:
    return await deliver(client, app, event, timestamp=int(clock.now().timestamp()))


def _renew(fake: FakeStripe, clock: FrozenClock, stripe_subscription: dict[str, Any]) -> Any:
    """Stripe at the period end: the renewal draft; our clock moves there too."""
    fake.now = min(item["current_period_end"] for item in stripe_subscription["items"]["data"])
    clock.set(datetime.fromtimestamp(fake.now, UTC))
    return fake.renew_subscription(stripe_subscription["id"])


async def _charges(session: AsyncSession) -> list[OverageCharge]:
    query = select(OverageCharge).order_by(OverageCharge.id)
    return list((await session.scalars(query.execution_options(populate_existing=True))).all())


async def _overage_rows(session: AsyncSession) -> list[BillingHistory]:
    query = select(BillingHistory).where(BillingHistory.type == "overage")
    return list((await session.scalars(query.execution_options(populate_existing=True))).all())


def _item_keys(fake: FakeStripe) -> list[str | None]:
    return [request.idempotency_key for request in fake.calls("POST", "/v1/invoiceitems")]


async def test_invoice_created_three_times_adds_the_items_once_to_that_draft(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    totals = await _usage(session, subscription, minutes="2120.5", agents=12)
    draft = _renew(fake_stripe, clock, stripe_subscription)
    plan_total = draft["total"]
    event = fake_stripe.event("invoice.created", draft)
    # Stripe's retries of one event, and two more events about the same draft (a replay, a
    # catch-up by reconciliation), one of them while another is processed.
    again = copy.deepcopy(event) | {"id": "evt_invoice_created_again"}
    third = copy.deepcopy(event) | {"id": "evt_invoice_created_third"}

    for delivery in (event, event, event):
        assert (await post_event(client, delivery)).status_code == 200
    assert (await run_worker(app, event["id"])).outcome == "processed"
    assert (await run_worker(app, event["id"])).outcome == "skipped"
    for other in (again, third):
        assert (await post_event(client, other)).status_code == 200
    outcomes = await asyncio.gather(run_worker(app, again["id"]), run_worker(app, third["id"]))
    assert {result.outcome for result in outcomes} == {"processed"}

    [charge] = await _charges(session)
    # 120.5 min x 2.5 = 301.25 -> 301; 2 agents x 1500 = 3000.
    assert (charge.sequence, charge.minutes_amount, charge.agents_amount, charge.amount) == (
        0,
        301,
        3_000,
        3_301,
    )
    assert (charge.status, charge.stripe_invoice_id) == ("invoiced", draft["id"])
    items = list(fake_stripe.invoice_items.values())
    assert sorted(item["amount"] for item in items) == [301, 3_000]
    assert {item["invoice"] for item in items} == {draft["id"]}
    assert {item["metadata"]["overage_charge_id"] for item in items} == {str(charge.id)}
    assert _item_keys(fake_stripe) == [
        f"overage:{charge.id}:minutes",
        f"overage:{charge.id}:agents",
    ]
    invoice = fake_stripe.invoices[draft["id"]]
    assert invoice["total"] == plan_total + 3_301
    await session.refresh(totals)
    assert totals.overage_billed_at == clock.now()
    [row] = await _overage_rows(session)
    assert (row.amount, row.status, row.stripe_invoice_id, row.overage_charge_id) == (
        3_301,
        "draft",
        draft["id"],
        charge.id,
    )

    # An hour later Stripe finalizes the renewal: the overage row follows its invoice.
    finalized = fake_stripe.finalize_invoice(draft["id"])
    fake_stripe.now += 3_600
    clock.advance(timedelta(hours=1))
    assert await _deliver(
        client, app, fake_stripe.event("invoice.finalized", finalized), clock
    ) == ("processed")
    [row] = await _overage_rows(session)
    assert (row.status, row.number) == ("open", finalized["number"])

    # The invoice's PDF shows each overage line with its quantity and the rate charged.
    assert (charge.rate_per_minute, charge.rate_per_agent) == (Decimal("2.5"), Decimal("1500"))
    pdf = await client.get(
        f"/subscriptions/api/billing-history/{row.id}/pdf/", headers=bearer(make_token("42"))
    )
    assert pdf.status_code == 200, pdf.text
    text = pdf_text(pdf.content)
    assert "120.5 min $0.025 / minute $3.01" in text
    assert "2 agents $15.00 / agent $30.00" in text


async def test_an_invoice_finalized_before_the_items_got_on_it_bills_them_with_the_next_one(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, minutes="2040")
    draft = _renew(fake_stripe, clock, stripe_subscription)
    plan_total = draft["total"]
    event = fake_stripe.event("invoice.created", draft)
    # The worker got to the event after Stripe finalized the draft.
    fake_stripe.finalize_invoice(draft["id"])

    assert await _deliver(client, app, event, clock) == "processed"

    [charge] = await _charges(session)
    assert (charge.amount, charge.status, charge.stripe_invoice_id) == (
        100,
        "pending_next_invoice",
        None,
    )
    [item] = fake_stripe.invoice_items.values()
    [request] = fake_stripe.calls("POST", "/v1/invoiceitems")
    assert "invoice" not in request.params
    assert request.params["subscription"] == stripe_subscription["id"]
    assert request.idempotency_key == f"overage:{charge.id}:minutes:next"
    assert (item["invoice"], item["amount"]) == (None, 100)
    assert fake_stripe.invoices[draft["id"]]["total"] == plan_total
    [row] = await _overage_rows(session)
    assert (row.status, row.stripe_invoice_id) == ("pending", None)

    # The next renewal takes the pending item; its invoice.created links the charge to it.
    next_draft = _renew(fake_stripe, clock, stripe_subscription)
    assert item["invoice"] == next_draft["id"]
    assert (
        await _deliver(client, app, fake_stripe.event("invoice.created", next_draft), clock)
        == "processed"
    )
    [charge] = await _charges(session)
    assert (charge.status, charge.stripe_invoice_id) == ("invoiced", next_draft["id"])
    [row] = await _overage_rows(session)
    assert (row.status, row.stripe_invoice_id) == ("draft", next_draft["id"])
    assert len(fake_stripe.invoice_items) == 1


async def test_a_late_record_after_billing_is_charged_once_as_an_adjustment(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    totals = await _usage(session, subscription, minutes="2120.5", agents=12)
    draft = _renew(fake_stripe, clock, stripe_subscription)
    assert await _deliver(client, app, fake_stripe.event("invoice.created", draft), clock) == (
        "processed"
    )
    # Two hours later the telephony backend reports a call of the closed period: ingestion
    # keeps the record and counts it in the (billed) period's totals.
    clock.advance(timedelta(hours=2))
    session.add(
        UsageRecord(
            customer_id=subscription.customer_id,
            subscription_id=subscription.id,
            kind="minutes",
            call_id="late-call-1",
            minutes=Decimal("10.3"),
            occurred_at=totals.period_end - timedelta(minutes=30),
            period_start=totals.period_start,
            source="service",
            request_fingerprint="f" * 64,
            created_at=clock.now(),
        )
    )
    await session.refresh(totals)
    totals.minutes_used += Decimal("10.3")
    await session.commit()

    first_run = await bill_overage_adjustments(app_job_ctx(app))
    clock.advance(timedelta(minutes=10))
    second_run = await bill_overage_adjustments(app_job_ctx(app))

    assert (first_run, second_run) == (1, 0)
    [first, adjustment] = await _charges(session)
    assert (first.sequence, first.amount) == (0, 3_301)
    # 130.8 min x 2.5 = 327 in all; 301 charged: 26 more. The agents did not change.
    assert (adjustment.sequence, adjustment.minutes_amount, adjustment.agents_amount) == (1, 26, 0)
    assert adjustment.minutes_over == Decimal("10.3")
    assert adjustment.status == "pending_next_invoice"
    late_items = [
        item
        for item in fake_stripe.invoice_items.values()
        if item["metadata"]["overage_charge_id"] == str(adjustment.id)
    ]
    assert [(item["amount"], item["invoice"]) for item in late_items] == [(26, None)]
    assert _item_keys(fake_stripe)[-1] == f"overage:{adjustment.id}:minutes:next"
    assert len(fake_stripe.calls("POST", "/v1/invoiceitems")) == 3
    rows = await _overage_rows(session)
    assert sorted(row.amount for row in rows) == [26, 3_301]


async def test_the_plan_in_force_at_the_close_prices_the_whole_period(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, minutes="5200")
    bigger = await create_synced_plan(
        session,
        fake_stripe,
        slug="professional",
        included_minutes=5_000,
        overage_rate_per_minute=Decimal(2),
    )
    # Upgraded mid-period (as customer.subscription.updated leaves it).
    subscription.plan_id = bigger.id
    await session.commit()
    draft = _renew(fake_stripe, clock, stripe_subscription)

    assert await _deliver(client, app, fake_stripe.event("invoice.created", draft), clock) == (
        "processed"
    )

    # 200 min x 2 = 400 (the old plan would have made it 3,200 x 2.5 = 8,000).
    [charge] = await _charges(session)
    assert (charge.minutes_over, charge.amount) == (Decimal(200), 400)


def _move_plan_item(fake: FakeStripe, stripe_subscription: dict[str, Any], price_id: str) -> None:
    """Stripe's plan item now bills this price (a schedule's next phase, or an upgrade)."""
    [plan_item] = stripe_subscription["items"]["data"]
    plan_item["price"] = fake.prices[price_id]


async def test_a_downgrade_applied_at_the_renewal_does_not_price_the_period_it_closes(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, minutes="2100")
    smaller = await create_synced_plan(
        session,
        fake_stripe,
        slug="lite",
        included_minutes=1_000,
        overage_rate_per_minute=Decimal(5),
    )
    # The scheduled downgrade takes effect at the renewal, and Stripe's
    # customer.subscription.updated reaches us before the renewal's invoice.created.
    assert smaller.stripe_monthly_price_id is not None
    _move_plan_item(fake_stripe, stripe_subscription, smaller.stripe_monthly_price_id)
    draft = _renew(fake_stripe, clock, stripe_subscription)
    updated = fake_stripe.event("customer.subscription.updated", stripe_subscription)
    assert await _deliver(client, app, updated, clock) == "processed"
    assert (await local_subscription(session)).plan_id == smaller.id

    assert await _deliver(client, app, fake_stripe.event("invoice.created", draft), clock) == (
        "processed"
    )

    # The period ran on the old plan: 100 min x 2.5 = 250 (the new one would say 5,500).
    [charge] = await _charges(session)
    assert (charge.minutes_over, charge.amount) == (Decimal(100), 250)


async def test_a_late_record_is_priced_with_the_terms_its_period_was_closed_with(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    totals = await _usage(session, subscription, minutes="2100")
    draft = _renew(fake_stripe, clock, stripe_subscription)
    assert await _deliver(client, app, fake_stripe.event("invoice.created", draft), clock) == (
        "processed"
    )
    # In the next period the customer upgrades to a plan that would have covered it all.
    bigger = await create_synced_plan(
        session,
        fake_stripe,
        slug="professional",
        included_minutes=5_000,
        overage_rate_per_minute=Decimal(2),
    )
    assert bigger.stripe_monthly_price_id is not None
    _move_plan_item(fake_stripe, stripe_subscription, bigger.stripe_monthly_price_id)
    clock.advance(timedelta(days=3))
    fake_stripe.now += 3 * 86_400
    updated = fake_stripe.event("customer.subscription.updated", stripe_subscription)
    assert await _deliver(client, app, updated, clock) == "processed"
    # Then a late call of the closed period arrives.
    session.add(
        UsageRecord(
            customer_id=subscription.customer_id,
            subscription_id=subscription.id,
            kind="minutes",
            call_id="late-call-after-upgrade",
            minutes=Decimal(10),
            occurred_at=totals.period_end - timedelta(hours=1),
            period_start=totals.period_start,
            source="service",
            request_fingerprint="f" * 64,
            created_at=clock.now(),
        )
    )
    await session.refresh(totals)
    totals.minutes_used += Decimal(10)
    await session.commit()

    assert await bill_overage_adjustments(app_job_ctx(app)) == 1

    # Closed at 2.5 a minute over 2,000: 110 x 2.5 = 275, of which 250 charged. Priced with
    # the new plan it would have been a credit of the whole 250.
    [first, late] = await _charges(session)
    assert (first.amount, late.sequence, late.amount) == (250, 1, 25)


async def test_a_proration_invoice_closes_no_period(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    totals = await _usage(session, subscription, minutes="2500")
    # An upgrade invoiced at once: proration lines only, the period goes on.
    invoice = copy.deepcopy(fake_stripe.invoices[stripe_subscription["latest_invoice"]])
    invoice.update(id="in_upgrade", billing_reason="subscription_update", status="draft")
    for line in invoice["lines"]["data"]:
        line["parent"]["subscription_item_details"]["proration"] = True
    event = fake_stripe.event("invoice.created", invoice)

    assert await _deliver(client, app, event, clock) == "processed"

    assert await _charges(session) == []
    await session.refresh(totals)
    assert totals.overage_billed_at is None


async def test_stripe_failing_leaves_the_charge_pending_and_the_sweeper_finishes_it_once(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, minutes="2120.5", agents=12)
    draft = _renew(fake_stripe, clock, stripe_subscription)
    # Stripe creates the first item and the answer is lost; the second gets a 500.
    fake_stripe.fail_next("POST", "/v1/invoiceitems", timeout=True, after_acting=True)

    assert await _deliver(client, app, fake_stripe.event("invoice.created", draft), clock) == (
        "processed"
    )
    [charge] = await _charges(session)
    assert charge.status == "pending"

    class Queue:
        def __init__(self) -> None:
            self.jobs: list[tuple[str, int, str]] = []

        async def enqueue_job(
            self, name: str, charge_id: int, *, _job_id: str, _defer_by: object = None
        ) -> None:
            self.jobs.append((name, charge_id, _job_id))

    queue = Queue()
    assert await sweep_overage_charges(app_job_ctx(app, redis=queue)) == 0  # too fresh
    clock.advance(timedelta(minutes=2))
    assert await sweep_overage_charges(app_job_ctx(app, redis=queue)) == 1
    [(job, queued_id, job_id)] = queue.jobs
    assert (job, queued_id) == ("bill_overage_charge", charge.id)
    assert job_id.startswith(f"overage-charge:{charge.id}:")

    assert await bill_overage_charge(app_job_ctx(app), charge.id) == "invoiced"
    assert await bill_overage_charge(app_job_ctx(app), charge.id) == "invoiced"

    # The lost item was found by its metadata, not created again.
    assert sorted(item["amount"] for item in fake_stripe.invoice_items.values()) == [301, 3_000]
    assert {item["invoice"] for item in fake_stripe.invoice_items.values()} == {draft["id"]}
    assert len(await _overage_rows(session)) == 1


async def test_a_charge_pending_for_hours_alerts_an_operator_once(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, minutes="2100")
    draft = _renew(fake_stripe, clock, stripe_subscription)
    fake_stripe.fail_next("POST", "/v1/invoiceitems", status=500, times=10)
    await _deliver(client, app, fake_stripe.event("invoice.created", draft), clock)

    class Queue:
        async def enqueue_job(self, *args: Any, **kwargs: Any) -> None:
            return None

    clock.advance(timedelta(hours=7))
    for _ in range(2):
        await sweep_overage_charges(app_job_ctx(app, redis=Queue()))

    alerts = (await session.scalars(select(OperatorAlert))).all()
    assert [alert.kind for alert in alerts] == ["overage_charge_stuck"]


async def test_a_canceled_subscription_has_its_last_period_billed_on_a_one_off_invoice(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, minutes="2100")
    # Canceled at once, ten days into the period.
    fake_stripe.now += 10 * 86_400
    clock.set(datetime.fromtimestamp(fake_stripe.now, UTC))
    stripe_subscription.update(
        status="canceled", canceled_at=fake_stripe.now, ended_at=fake_stripe.now
    )
    event = fake_stripe.event("customer.subscription.deleted", stripe_subscription)

    assert await _deliver(client, app, event, clock) == "processed"
    assert await _deliver(client, app, event | {"id": "evt_deleted_again"}, clock) == "processed"

    [charge] = await _charges(session)
    assert (charge.amount, charge.status) == (250, "invoiced")
    [created] = fake_stripe.calls("POST", "/v1/invoices")
    assert created.idempotency_key == f"overage-invoice:{charge.id}"
    assert created.params["pending_invoice_items_behavior"] == "exclude"
    invoice = fake_stripe.invoices[charge.stripe_invoice_id or ""]
    assert (invoice["status"], invoice["total"]) == ("open", 250)
    assert invoice["metadata"] == {"billing_type": "overage", "overage_charge_id": str(charge.id)}
    assert _item_keys(fake_stripe) == [f"overage:{charge.id}:minutes"]
    [finalize] = fake_stripe.calls("POST", f"/v1/invoices/{invoice['id']}/finalize")
    assert finalize.idempotency_key == f"overage-finalize:{charge.id}"
    [row] = await _overage_rows(session)
    assert (row.status, row.amount, row.stripe_invoice_id) == ("open", 250, invoice["id"])
    # Stripe's own events about that invoice keep the one row in step: the customer sees the
    # charge once, not the charge and the invoice beside it.
    invoice.update(status="paid", amount_paid=250, amount_remaining=0)
    assert await _deliver(client, app, fake_stripe.event("invoice.paid", invoice), clock) == (
        "processed"
    )
    rows = (
        await session.scalars(
            select(BillingHistory)
            .where(BillingHistory.stripe_invoice_id == invoice["id"])
            .execution_options(populate_existing=True)
        )
    ).all()
    assert [(row.type, row.status, row.overage_charge_id) for row in rows] == [
        ("overage", "paid", charge.id)
    ]


async def test_a_yearly_subscription_asks_stripe_to_invoice_pending_items_monthly(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    headers = bearer(make_token("42"))
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_visa", "billing_cycle": "yearly"}

    response = await client.post(SUBSCRIBE, json=body, headers=headers)

    assert response.status_code == 200, response.text
    [create] = fake_stripe.calls("POST", "/v1/subscriptions")
    assert create.params["pending_invoice_item_interval"] == {"interval": "month"}
    [stripe_subscription] = fake_stripe.subscriptions.values()
    assert stripe_subscription["pending_invoice_item_interval"]["interval"] == "month"


async def test_a_monthly_subscription_leaves_pending_items_to_its_renewals(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    await subscribe_through_api(client, make_token, session, fake_stripe)

    [create] = fake_stripe.calls("POST", "/v1/subscriptions")
    assert "pending_invoice_item_interval" not in create.params


async def test_a_yearly_subscriptions_ended_monthly_period_is_billed_by_the_cron(
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
    # Set before this service did so at creation: the cron sets it.
    stripe_subscription["pending_invoice_item_interval"] = None
    subscription = await local_subscription(session)
    totals = await _usage(session, subscription, minutes="2500", agents=11)

    clock.set(totals.period_end + timedelta(minutes=30))
    assert await close_ended_usage_periods(app_job_ctx(app)) == 0  # still in its grace
    clock.set(totals.period_end + timedelta(hours=2))
    assert await close_ended_usage_periods(app_job_ctx(app)) == 1
    assert await close_ended_usage_periods(app_job_ctx(app)) == 0

    # The monthly allowance, not twelve of them: 500 x 2.5 = 1,250; 1 agent x 1500.
    [charge] = await _charges(session)
    assert (charge.amount, charge.status) == (2_750, "pending_next_invoice")
    requests = fake_stripe.calls("POST", "/v1/invoiceitems")
    assert {request.params["subscription"] for request in requests} == {stripe_subscription["id"]}
    assert all("invoice" not in request.params for request in requests)
    [update] = fake_stripe.calls("POST", f"/v1/subscriptions/{stripe_subscription['id']}")
    assert update.params["pending_invoice_item_interval"] == {"interval": "month"}
    assert stripe_subscription["pending_invoice_item_interval"]["interval"] == "month"


async def test_a_period_no_event_closed_is_billed_with_the_next_invoice_a_day_late(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    totals = await _usage(session, subscription, minutes="2010")
    # The renewal's invoice.created never arrived (the endpoint was down past the draft hour).
    clock.set(totals.period_end + timedelta(hours=12))
    assert await close_ended_usage_periods(app_job_ctx(app)) == 0
    clock.set(totals.period_end + timedelta(days=1, hours=1))

    assert await close_ended_usage_periods(app_job_ctx(app)) == 1

    [charge] = await _charges(session)
    assert (charge.amount, charge.status) == (25, "pending_next_invoice")
    [request] = fake_stripe.calls("POST", "/v1/invoiceitems")
    assert request.params["subscription"] == stripe_subscription["id"]
    # A monthly subscription needs no pending-items interval: its renewals take them.
    assert not fake_stripe.calls("POST", f"/v1/subscriptions/{stripe_subscription['id']}")


async def test_an_immediate_cancel_bills_the_last_period_without_waiting_for_the_webhook(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, minutes="2100")

    response = await client.post(
        "/subscriptions/api/manage/",
        json={"action": "cancel", "at_period_end": False},
        headers=bearer(make_token("42")),
    )

    assert response.status_code == 200, response.text
    assert response.json()["subscription"]["status"] == "canceled"
    assert await run_queued_jobs(app, bill_ended_subscription_usage) == [
        "bill_ended_subscription_usage"
    ]
    [charge] = await _charges(session)
    assert (charge.amount, charge.status) == (250, "invoiced")
    assert _item_keys(fake_stripe) == [f"overage:{charge.id}:minutes"]


async def test_an_invoice_paid_before_its_charge_row_existed_shows_paid_once_billed(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, minutes="2100")
    # Stripe charges the one-off invoice the moment it is finalized, so its `paid` state
    # exists before the charge's history row does.
    finalize = next(
        route for route in fake_stripe.routes if route.pattern.pattern.endswith("/finalize")
    )

    def finalize_and_charge(params: Any, invoice_id: str) -> Any:
        opened = copy.deepcopy(finalize.handler(params, invoice_id))
        fake_stripe.pay_invoice_out_of_band(invoice_id)
        return opened

    fake_stripe.add_route(
        finalize.method, finalize.pattern.pattern, finalize.params_type, finalize_and_charge
    )
    fake_stripe.now += 10 * 86_400
    clock.set(datetime.fromtimestamp(fake_stripe.now, UTC))
    stripe_subscription.update(
        status="canceled", canceled_at=fake_stripe.now, ended_at=fake_stripe.now
    )
    event = fake_stripe.event("customer.subscription.deleted", stripe_subscription)

    assert await _deliver(client, app, event, clock) == "processed"

    [charge] = await _charges(session)
    [row] = await _overage_rows(session)
    assert (row.status, row.stripe_invoice_id) == ("paid", charge.stripe_invoice_id)
    assert row.number is not None and row.number.startswith("FAKE-")
    # An older event of that invoice, processed late, does not move it back.
    opened = copy.deepcopy(fake_stripe.invoices[charge.stripe_invoice_id or ""])
    opened["status"] = "open"
    async with app.state.sessionmaker.begin() as other:
        await record_invoice_overage(
            other,
            invoice=parse_invoice(opened),
            customer_id=subscription.customer_id,
            subscription_id=subscription.id,
            now=clock.now(),
        )
    [row] = await _overage_rows(session)
    assert row.status == "paid"
