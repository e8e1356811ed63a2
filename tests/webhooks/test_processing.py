"""The worker's side: each event type's effect, exactly once, in object order, with retries."""

import asyncio
import copy
import random
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.models import (
    BillingHistory,
    Customer,
    Notification,
    OperatorAlert,
    PaymentMethod,
    StripeEvent,
)
from app.webhooks import handlers
from tests.conftest import TokenFactory, bearer
from tests.factories import subscribe_through_api
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import (
    deliver,
    event_at,
    local_subscription,
    post_event,
    run_worker,
)


async def test_subscription_updated_applies_status_periods_and_cancellation(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    stripe_subscription["status"] = "past_due"
    stripe_subscription["cancel_at_period_end"] = True
    event = event_at(
        fake_stripe, "customer.subscription.updated", stripe_subscription, fake_stripe.now + 5
    )

    assert await deliver(client, app, event) == "processed"

    subscription = await local_subscription(session)
    assert subscription.status == "past_due"
    assert subscription.cancel_at_period_end is True


async def test_the_same_event_processed_ten_times_at_once_takes_effect_once(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    stripe_subscription["trial_end"] = fake_stripe.now + 3 * 86_400
    event = event_at(
        fake_stripe,
        "customer.subscription.trial_will_end",
        stripe_subscription,
        fake_stripe.now + 1,
    )
    assert (await post_event(client, event)).status_code == 200

    results = await asyncio.gather(*(run_worker(app, event["id"]) for _ in range(10)))

    assert [r.outcome for r in results].count("processed") == 1
    assert {r.outcome for r in results} <= {"processed", "busy", "skipped"}
    reminders = select(func.count()).where(Notification.kind == "trial_will_end")
    assert await session.scalar(reminders) == 1
    stored = await session.scalar(select(StripeEvent))
    assert stored is not None and stored.attempts == 1


async def test_an_older_event_never_overwrites_newer_state(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    start = fake_stripe.now
    created = event_at(
        fake_stripe, "customer.subscription.created", copy.deepcopy(stripe_subscription), start + 1
    )
    stripe_subscription["status"] = "canceled"
    stripe_subscription["canceled_at"] = start + 3
    deleted = event_at(fake_stripe, "customer.subscription.deleted", stripe_subscription, start + 3)
    stale = copy.deepcopy(deleted)
    stale.update(id="evt_stale_update", type="customer.subscription.updated", created=start + 2)
    stale["data"]["object"]["status"] = "active"

    # Stripe delivers in no order: deleted first, then the older created and updated.
    for event in (deleted, created, stale):
        assert await deliver(client, app, event) == "processed"

    assert (await local_subscription(session)).status == "canceled"


async def test_events_in_the_same_second_are_settled_from_stripe(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    second = fake_stripe.now + 10
    later_state = copy.deepcopy(stripe_subscription)
    later_state["status"] = "past_due"
    earlier_state = copy.deepcopy(stripe_subscription)
    earlier_state["status"] = "active"
    stripe_subscription["status"] = "past_due"  # what Stripe holds now

    first = event_at(fake_stripe, "customer.subscription.updated", later_state, second)
    tie = event_at(fake_stripe, "customer.subscription.updated", earlier_state, second)
    await deliver(client, app, first)
    await deliver(client, app, tie)

    assert (await local_subscription(session)).status == "past_due"
    assert fake_stripe.calls("GET", f"/v1/subscriptions/{stripe_subscription['id']}")


async def test_thirty_shuffled_events_end_like_in_order_delivery(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    rng = random.Random(20261125)
    events = []
    for step in range(30):
        state = copy.deepcopy(stripe_subscription)
        state["status"] = rng.choice(["active", "past_due", "unpaid"])
        state["cancel_at_period_end"] = rng.choice([True, False])
        events.append(
            event_at(
                fake_stripe, "customer.subscription.updated", state, fake_stripe.now + 10 + step
            )
        )
    final = events[-1]["data"]["object"]
    stripe_subscription.update(
        status=final["status"], cancel_at_period_end=final["cancel_at_period_end"]
    )
    rng.shuffle(events)

    for event in events:
        assert await deliver(client, app, event) == "processed"

    subscription = await local_subscription(session)
    assert (subscription.status, subscription.cancel_at_period_end) == (
        final["status"],
        final["cancel_at_period_end"],
    )


def _flaky(failures: int, real: handlers.Handler) -> tuple[handlers.Handler, list[int]]:
    calls: list[int] = []

    async def handler(session: AsyncSession, context: handlers.EventContext) -> None:
        calls.append(1)
        if len(calls) <= failures:
            raise RuntimeError(f"boom {len(calls)}")
        await real(session, context)

    return handler, calls


async def test_a_handler_that_fails_twice_then_succeeds_is_retried(
    client: httpx.AsyncClient,
    app: FastAPI,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
    clock: FrozenClock,
) -> None:
    handler, calls = _flaky(2, handlers.customer_deleted)
    monkeypatch.setitem(handlers.HANDLERS, "customer.deleted", handler)
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    await post_event(client, event)

    outcomes = []
    for _ in range(3):
        outcome = await run_worker(app, event["id"])
        outcomes.append(outcome)
        # Before its back-off has passed, the event is not run again.
        assert (await run_worker(app, event["id"])).outcome in ("busy", "skipped")
        if outcome.retry_in is not None:
            clock.advance(outcome.retry_in)

    assert [o.outcome for o in outcomes] == ["retry", "retry", "processed"]
    assert outcomes[0].retry_in is not None and outcomes[1].retry_in is not None
    assert outcomes[1].retry_in > outcomes[0].retry_in
    assert len(calls) == 3


async def test_an_event_that_always_fails_ends_failed_and_a_redelivery_runs_it_once_fixed(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
    clock: FrozenClock,
) -> None:
    customer = fake_stripe.add_customer()
    session.add(Customer(dashboard_user_id="7", stripe_customer_id=customer["id"]))
    await session.commit()
    broken, _ = _flaky(1_000, handlers.customer_deleted)
    monkeypatch.setitem(handlers.HANDLERS, "customer.deleted", broken)
    first = fake_stripe.event("customer.deleted", customer)
    second = fake_stripe.event("customer.deleted", customer)
    for event in (first, second):
        await post_event(client, event)
        outcomes = []
        for _ in range(3):
            result = await run_worker(app, event["id"])
            outcomes.append(result.outcome)
            clock.advance(result.retry_in or timedelta(0))
        assert outcomes == ["retry", "retry", "failed"]

    admin = bearer(make_token("1", roles=["billing_admin"]))
    listed = await client.get(
        "/subscriptions/api/admin/webhook-events/?status=failed", headers=admin
    )
    assert {e["stripe_event_id"] for e in listed.json()["webhook_events"]} == {
        first["id"],
        second["id"],
    }
    assert listed.json()["webhook_events"][0]["last_error"].startswith("RuntimeError")
    assert listed.json()["stats"]["by_status"] == {"failed": 2}

    monkeypatch.setitem(handlers.HANDLERS, "customer.deleted", handlers.customer_deleted)
    # Stripe redelivers the first; an operator replays the second.
    assert (await post_event(client, first)).json()["duplicate"] is True
    replayed = await client.post(
        f"/subscriptions/api/admin/webhook-events/{second['id']}/replay/", headers=admin
    )
    assert replayed.status_code == 200
    assert (await run_worker(app, first["id"])).outcome == "processed"
    assert (await run_worker(app, second["id"])).outcome == "processed"
    assert (await run_worker(app, first["id"])).outcome == "skipped"
    deleted = await session.scalar(
        select(Customer.stripe_customer_deleted_at).execution_options(populate_existing=True)
    )
    assert deleted is not None


async def test_unknown_types_are_stored_and_ignored(
    client: httpx.AsyncClient, app: FastAPI, fake_stripe: FakeStripe
) -> None:
    event = fake_stripe.event("product.created", {"id": "prod_1", "object": "product"})
    assert await deliver(client, app, event) == "ignored"


async def test_invoice_events_fill_billing_history_and_the_attempt_counter(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    invoice = copy.deepcopy(fake_stripe.invoices[stripe_subscription["latest_invoice"]])
    invoice.update(status="open", attempt_count=2)
    failed = event_at(fake_stripe, "invoice.payment_failed", invoice, fake_stripe.now + 5)
    assert await deliver(client, app, failed) == "processed"
    assert (await local_subscription(session)).failed_payment_attempts == 2

    invoice.update(status="paid", attempt_count=3)
    paid = event_at(fake_stripe, "invoice.paid", invoice, fake_stripe.now + 6)
    assert await deliver(client, app, paid) == "processed"

    assert (await local_subscription(session)).failed_payment_attempts == 0
    rows = (
        await session.scalars(select(BillingHistory).execution_options(populate_existing=True))
    ).all()
    assert [(row.stripe_invoice_id, row.status, row.type) for row in rows] == [
        (invoice["id"], "paid", "subscription")
    ]


async def test_payment_method_events_keep_the_mirror_true(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    await subscribe_through_api(client, make_token, session, fake_stripe)
    [customer] = fake_stripe.customers.values()
    card = fake_stripe.add_payment_method(
        "pm_added_elsewhere", customer=customer["id"], last4="1881"
    )
    attached = event_at(fake_stripe, "payment_method.attached", card, fake_stripe.now + 5)
    assert await deliver(client, app, attached) == "processed"
    last4s = set((await session.scalars(select(PaymentMethod.last4))).all())
    assert last4s == {"4242", "1881"}

    detached_card = copy.deepcopy(card)
    detached_card["customer"] = None
    detached = event_at(fake_stripe, "payment_method.detached", detached_card, fake_stripe.now + 6)
    assert await deliver(client, app, detached) == "processed"
    assert set((await session.scalars(select(PaymentMethod.stripe_payment_method_id))).all()) == {
        "pm_card_visa"
    }


async def test_disputes_raise_one_operator_alert_and_refunds_add_history(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    await subscribe_through_api(client, make_token, session, fake_stripe)
    [customer] = fake_stripe.customers.values()
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "charge": "ch_1",
        "amount": 4_900,
        "currency": "usd",
        "reason": "fraudulent",
    }
    event = event_at(fake_stripe, "charge.dispute.created", dispute, fake_stripe.now + 5)
    assert await deliver(client, app, event) == "processed"
    assert (await post_event(client, event)).json()["duplicate"] is True
    assert await session.scalar(select(func.count()).select_from(OperatorAlert)) == 1

    charge = {
        "id": "ch_1",
        "object": "charge",
        "customer": customer["id"],
        "amount": 4_900,
        "amount_refunded": 1_000,
        "currency": "usd",
        "refunded": False,
        "created": fake_stripe.now,
    }
    refunded = event_at(fake_stripe, "charge.refunded", charge, fake_stripe.now + 6)
    assert await deliver(client, app, refunded) == "processed"
    refunds = (
        await session.scalars(select(BillingHistory).where(BillingHistory.type == "refund"))
    ).all()
    assert [(row.amount, row.stripe_charge_id) for row in refunds] == [(1_000, "ch_1")]


async def test_events_stored_while_redis_was_down_are_swept_up(
    database_url: str,
    redis_url: str,
    clock: Any,
    engine: Any,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    from app.jobs.queue import connect_job_queue
    from app.main import create_app
    from app.webhooks.tasks import sweep_stripe_events
    from tests.conftest import make_settings
    from tests.running_jobs import app_job_ctx

    down = create_app(make_settings(database_url, "redis://127.0.0.1:1/0"), clock)
    transport = httpx.ASGITransport(app=down)
    events = [fake_stripe.event("customer.deleted", fake_stripe.add_customer()) for _ in range(3)]
    async with (
        down.router.lifespan_context(down),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        for event in events:
            assert (await post_event(client, event)).status_code == 200

        redis = connect_job_queue(redis_url)
        try:
            clock.advance(__import__("datetime").timedelta(minutes=1))
            ctx = app_job_ctx(down, redis=redis)
            assert await sweep_stripe_events(ctx) == 3
            queued = await redis.queued_jobs()
            assert sorted(job.args[0] for job in queued) == sorted(e["id"] for e in events)
        finally:
            await redis.aclose()
        for event in events:
            assert (await run_worker(down, event["id"])).outcome == "processed"
