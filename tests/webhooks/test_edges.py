"""Edges of webhook processing: odd input, lost enqueues, same-second races, late events."""

import copy
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer, Notification, PaymentMethod, StripeEvent
from app.webhooks import handlers
from app.webhooks import repository as webhook_repository
from app.webhooks.samples import signature_header
from tests.conftest import TokenFactory
from tests.factories import create_synced_plan, subscribe_through_api
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import (
    SECRET,
    WEBHOOK,
    deliver,
    event_at,
    local_subscription,
    post_event,
    run_worker,
    schedule_payload,
    setup_intent_payload,
)


# --- unsigned header values that 500 ---------------------------------------------
@pytest.mark.parametrize(
    "header", ["t=\u00b2,v1=00", "t=" + "9" * 400 + ",v1=00", "t=" + "9" * 5000]
)
async def test_an_odd_signature_header_is_400(client: httpx.AsyncClient, header: str) -> None:
    r = await client.post(
        WEBHOOK, content=b"{}", headers=[(b"Stripe-Signature", header.encode("latin-1"))]
    )
    # Refused, or (an odd api_version) stored and later settled from Stripe: never a 500.
    assert r.status_code in (200, 400), (r.status_code, r.text[:200])


# --- signed but odd bodies that 500 ----------------------------------------------
def _base(fake: FakeStripe) -> dict[str, Any]:
    return fake.event("customer.deleted", fake.add_customer())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.update(data=[]),
        lambda e: e.update(data={"object": "x"}),
        lambda e: e.update(id="evt_" + "a" * 300),
        lambda e: e.update(created=10**13),
        lambda e: e.update(api_version=5),
        lambda e: e.update(type="x\u0000"),
    ],
    ids=["data_list", "object_str", "long_id", "huge_created", "api_int", "nul"],
)
async def test_a_signed_body_not_shaped_like_an_event_is_never_a_500(
    client: httpx.AsyncClient, fake_stripe: FakeStripe, mutate: Any
) -> None:
    event = _base(fake_stripe)
    signed_at = event["created"]
    mutate(event)
    body = json.dumps(event).encode()
    r = await client.post(
        WEBHOOK,
        content=body,
        headers={"Stripe-Signature": signature_header(body, SECRET, signed_at)},
    )
    # Refused, or (an odd api_version) stored and later settled from Stripe: never a 500.
    assert r.status_code in (200, 400), (r.status_code, r.text[:200])


# --- failed event redelivered while Redis is down is never re-run -----------------
async def test_a_failed_event_redelivered_while_redis_is_down_is_swept_up(
    database_url: str,
    redis_url: str,
    clock: Any,
    engine: Any,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from app.jobs.queue import connect_job_queue
    from app.main import create_app
    from app.webhooks.tasks import sweep_stripe_events
    from tests.conftest import make_settings
    from tests.running_jobs import app_job_ctx

    async def broken(session: AsyncSession, context: handlers.EventContext) -> None:
        raise RuntimeError("bug")

    monkeypatch.setitem(handlers.HANDLERS, "customer.deleted", broken)
    down = create_app(make_settings(database_url, "redis://127.0.0.1:1/0"), clock)
    event = fake_stripe.event("customer.deleted", fake_stripe.add_customer())
    async with (
        down.router.lifespan_context(down),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=down), base_url="http://t") as client,
    ):
        await post_event(client, event)
        assert (await run_worker(down, event["id"], max_attempts=1)).outcome == "failed"
        monkeypatch.setitem(handlers.HANDLERS, "customer.deleted", handlers.customer_deleted)
        # Stripe redelivers (we answered 200 before, but say its retry schedule still runs),
        # signing the delivery afresh; Redis is down, so the enqueue is lost.
        redelivery = await post_event(client, event, timestamp=int(event["created"]) + 60)
        assert redelivery.json()["duplicate"] is True
        clock.advance(timedelta(minutes=5))
        redis = connect_job_queue(redis_url)
        try:
            swept = await sweep_stripe_events(app_job_ctx(down, redis=redis))
        finally:
            await redis.aclose()
    status = await session.scalar(select(StripeEvent.status))
    assert swept == 1, f"sweeper enqueued {swept}; event status {status}"


# --- two same-second events of one invoice processed concurrently: SCA notice lost --
async def test_same_second_events_of_one_object_keep_both_effects(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sub = await subscribe_through_api(client, make_token, session, fake_stripe)
    invoice = copy.deepcopy(fake_stripe.invoices[sub["latest_invoice"]])
    invoice.update(status="open", attempt_count=1, hosted_invoice_url="https://i/1")
    fake_stripe.invoices[invoice["id"]].update(status="open", attempt_count=1)
    t = fake_stripe.now + 5
    action = event_at(fake_stripe, "invoice.payment_action_required", invoice, t)
    failed = event_at(fake_stripe, "invoice.payment_failed", invoice, t)
    for e in (action, failed):
        assert (await post_event(client, e)).status_code == 200

    original = webhook_repository.get_watermark
    interleaved = False

    async def get_watermark(session: AsyncSession, object_id: str) -> Any:
        nonlocal interleaved
        found = await original(session, object_id)
        if not interleaved:
            interleaved = True  # the other job runs between our read and our apply
            assert (await run_worker(app, failed["id"])).outcome == "processed"
        return found

    monkeypatch.setattr(webhook_repository, "get_watermark", get_watermark)
    assert (await run_worker(app, action["id"])).outcome == "processed"
    kinds = (
        await session.scalars(select(Notification.kind).where(Notification.kind != "welcome"))
    ).all()
    assert kinds == ["payment_action_required"], kinds


# --- a stale payment_failed after invoice.paid re-raises the attempt counter -------
async def test_a_late_payment_failed_after_paid_does_not_count(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: Any,
) -> None:
    sub = await subscribe_through_api(client, make_token, session, fake_stripe)
    clock.advance(timedelta(seconds=60))  # the worker runs after the events were created
    invoice = copy.deepcopy(fake_stripe.invoices[sub["latest_invoice"]])
    failed_state = {**copy.deepcopy(invoice), "status": "open", "attempt_count": 1}
    paid_state = {**copy.deepcopy(invoice), "status": "paid", "attempt_count": 2}
    fake_stripe.invoices[invoice["id"]].update(status="paid", attempt_count=2)  # Stripe now
    paid = event_at(fake_stripe, "invoice.paid", paid_state, fake_stripe.now + 6)
    failed = event_at(fake_stripe, "invoice.payment_failed", failed_state, fake_stripe.now + 5)
    assert await deliver(client, app, paid) == "processed"
    assert await deliver(client, app, failed) == "processed"  # arrives late
    assert (await local_subscription(session)).failed_payment_attempts == 0


# --- a late invoice.paid of an older invoice resets the counter of a failing one ---
async def test_a_late_paid_of_an_older_invoice_keeps_the_newer_failure(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    sub = await subscribe_through_api(client, make_token, session, fake_stripe)
    month1 = copy.deepcopy(fake_stripe.invoices[sub["latest_invoice"]])
    month1.update(status="paid")
    month2 = copy.deepcopy(month1)
    month2.update(id="in_month2", status="open", attempt_count=1, created=month1["created"] + 100)
    failed2 = event_at(fake_stripe, "invoice.payment_failed", month2, fake_stripe.now + 100)
    paid1 = event_at(fake_stripe, "invoice.paid", month1, fake_stripe.now + 5)
    assert await deliver(client, app, failed2) == "processed"
    assert await deliver(client, app, paid1) == "processed"  # Stripe's retry, days late
    assert (await local_subscription(session)).failed_payment_attempts == 1


# --- schedule released (Stripe nulls `subscription`) leaves the pending change ----
async def test_a_released_schedule_clears_the_pending_change(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    sub = await subscribe_through_api(client, make_token, session, fake_stripe)
    cheaper = await create_synced_plan(session, fake_stripe, slug="cheaper", monthly_price=900)
    schedule = schedule_payload(sub, cheaper.stripe_monthly_price_id)
    ev = event_at(fake_stripe, "subscription_schedule.updated", schedule, fake_stripe.now + 4)
    assert await deliver(client, app, ev) == "processed"
    released = {
        **copy.deepcopy(schedule),
        "status": "released",
        "subscription": None,
        "released_subscription": sub["id"],
    }
    ev = event_at(fake_stripe, "subscription_schedule.released", released, fake_stripe.now + 5)
    assert await deliver(client, app, ev) == "processed"
    assert (await local_subscription(session)).pending_plan_id is None


# --- setup_intent.succeeded marks a default only locally ---------------------------
async def test_a_first_card_from_a_setup_intent_is_the_default_on_stripe_too(
    client: httpx.AsyncClient,
    app: FastAPI,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    customer = fake_stripe.add_customer()
    session.add(Customer(dashboard_user_id="9", stripe_customer_id=customer["id"]))
    await session.commit()
    fake_stripe.add_payment_method("pm_si", customer=customer["id"], last4="0005")
    seti = setup_intent_payload(customer["id"], "pm_si")
    ev = event_at(fake_stripe, "setup_intent.succeeded", seti, fake_stripe.now + 4)
    assert await deliver(client, app, ev) == "processed"
    local_default = await session.scalar(
        select(PaymentMethod.stripe_payment_method_id).where(PaymentMethod.is_default.is_(True))
    )
    stripe_default = fake_stripe.customers[customer["id"]]["invoice_settings"][
        "default_payment_method"
    ]
    assert local_default == stripe_default, (local_default, stripe_default)
    assert await session.scalar(select(func.count()).select_from(PaymentMethod)) == 1


# --- refetch stamped with the local clock; a clock behind Stripe discards it -------
async def test_a_tie_is_settled_from_stripe_even_when_our_clock_lags(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    sub = await subscribe_through_api(client, make_token, session, fake_stripe)
    second = fake_stripe.now + 10  # local (frozen) clock is 10 s behind Stripe's `created`
    old = {**copy.deepcopy(sub), "status": "active"}
    new = {**copy.deepcopy(sub), "status": "past_due"}
    sub["status"] = "past_due"  # what Stripe holds
    await deliver(client, app, event_at(fake_stripe, "customer.subscription.updated", old, second))
    await deliver(client, app, event_at(fake_stripe, "customer.subscription.updated", new, second))
    assert (await local_subscription(session)).status == "past_due"
