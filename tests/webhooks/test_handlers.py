"""The effects of the remaining event types."""

import copy

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Notification, PaymentMethod
from tests.conftest import TokenFactory
from tests.factories import create_synced_plan, subscribe_through_api
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import (
    deliver,
    event_at,
    local_subscription,
    schedule_payload,
    setup_intent_payload,
)


async def test_trial_reminders_only_for_a_trial_still_ahead(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    ended_early = copy.deepcopy(stripe_subscription)
    ended_early["trial_end"] = fake_stripe.now - 60
    ahead = copy.deepcopy(stripe_subscription)
    ahead["trial_end"] = fake_stripe.now + 3 * 86_400

    for state, offset in ((ended_early, 1), (ahead, 2)):
        event = event_at(
            fake_stripe, "customer.subscription.trial_will_end", state, fake_stripe.now + offset
        )
        assert await deliver(client, app, event) == "processed"

    kinds = (await session.scalars(select(Notification.kind).order_by(Notification.id))).all()
    assert kinds == ["welcome", "trial_will_end"]


async def test_payment_action_required_leaves_a_notice_with_the_invoice_link(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    invoice = copy.deepcopy(fake_stripe.invoices[stripe_subscription["latest_invoice"]])
    invoice.update(status="open", hosted_invoice_url="https://invoice.stripe.test/i/1")
    event = event_at(fake_stripe, "invoice.payment_action_required", invoice, fake_stripe.now + 3)

    assert await deliver(client, app, event) == "processed"

    notice = await session.scalar(
        select(Notification).where(Notification.kind == "payment_action_required")
    )
    assert notice is not None
    assert notice.payload["hosted_invoice_url"] == "https://invoice.stripe.test/i/1"


async def test_schedule_events_show_and_clear_the_pending_change(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    cheaper = await create_synced_plan(session, fake_stripe, slug="cheaper", monthly_price=900)
    schedule = schedule_payload(stripe_subscription, cheaper.stripe_monthly_price_id)
    updated = event_at(fake_stripe, "subscription_schedule.updated", schedule, fake_stripe.now + 4)
    assert await deliver(client, app, updated) == "processed"
    subscription = await local_subscription(session)
    assert subscription.pending_plan_id == cheaper.id
    assert subscription.stripe_schedule_id == "sub_sched_1"

    released = copy.deepcopy(schedule)
    released["status"] = "released"
    event = event_at(fake_stripe, "subscription_schedule.released", released, fake_stripe.now + 5)
    assert await deliver(client, app, event) == "processed"
    subscription = await local_subscription(session)
    assert subscription.pending_plan_id is None and subscription.stripe_schedule_id is None


async def test_a_card_added_through_a_setup_intent_is_mirrored(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    await subscribe_through_api(client, make_token, session, fake_stripe)
    [customer] = fake_stripe.customers.values()
    fake_stripe.add_payment_method("pm_from_setup", customer=customer["id"], last4="0005")
    setup_intent = setup_intent_payload(customer["id"], "pm_from_setup")
    event = event_at(fake_stripe, "setup_intent.succeeded", setup_intent, fake_stripe.now + 4)

    assert await deliver(client, app, event) == "processed"

    assert (
        await session.scalar(
            select(func.count()).select_from(PaymentMethod).where(PaymentMethod.last4 == "0005")
        )
        == 1
    )


async def test_every_invoice_event_records_the_invoice_once(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    from app.models import BillingHistory

    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    invoice = copy.deepcopy(fake_stripe.invoices[stripe_subscription["latest_invoice"]])
    steps = [
        ("invoice.created", "draft"),
        ("invoice.finalized", "open"),
        ("invoice.payment_succeeded", "paid"),
    ]
    for offset, (event_type, status) in enumerate(steps, start=1):
        invoice["status"] = status
        event = event_at(fake_stripe, event_type, copy.deepcopy(invoice), fake_stripe.now + offset)
        assert await deliver(client, app, event) == "processed"
        rows = (
            await session.scalars(select(BillingHistory).execution_options(populate_existing=True))
        ).all()
        assert [(row.stripe_invoice_id, row.status) for row in rows] == [(invoice["id"], status)]


async def test_a_canceled_or_completed_schedule_clears_the_pending_change(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    cheaper = await create_synced_plan(session, fake_stripe, slug="cheaper", monthly_price=900)
    for offset, ending in enumerate(("canceled", "completed")):
        schedule = schedule_payload(
            stripe_subscription, cheaper.stripe_monthly_price_id, schedule_id=f"sub_sched_{ending}"
        )
        base = fake_stripe.now + 10 * (offset + 1)
        updated = event_at(fake_stripe, "subscription_schedule.updated", schedule, base)
        assert await deliver(client, app, updated) == "processed"
        assert (await local_subscription(session)).pending_plan_id == cheaper.id
        ended = {**copy.deepcopy(schedule), "status": ending}
        event = event_at(fake_stripe, f"subscription_schedule.{ending}", ended, base + 1)
        assert await deliver(client, app, event) == "processed"
        assert (await local_subscription(session)).pending_plan_id is None
