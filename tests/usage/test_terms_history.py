"""Usage priced by the terms in force when it happened: the billing anchor a record was
placed by (a cycle change moves it) and the add-ons held at a period's end (issue: usage
terms that follow the account's history)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.core.periods import add_months
from app.models import OverageCharge, UsagePeriodTotals, UsageRecord
from app.usage.tasks import bill_overage_adjustments
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_add_on, subscribe_through_api
from tests.running_jobs import app_job_ctx
from tests.stripe.fake import FakeStripe
from tests.usage.helpers import call, period_totals, post_usage
from tests.webhooks.helpers import deliver, local_subscription

MANAGE = "/subscriptions/api/manage/"


def _move_to(fake_stripe: FakeStripe, clock: FrozenClock, moment: datetime) -> None:
    fake_stripe.now = int(moment.timestamp())
    clock.set(moment)


async def _charges(session: AsyncSession) -> list[OverageCharge]:
    query = select(OverageCharge).order_by(OverageCharge.id)
    return list((await session.scalars(query.execution_options(populate_existing=True))).all())


async def _record(session: AsyncSession, call_id: str) -> UsageRecord:
    query = select(UsageRecord).where(UsageRecord.call_id == call_id)
    record = await session.scalar(query.execution_options(populate_existing=True))
    assert record is not None
    return record


async def _posted(client: httpx.AsyncClient, token: str, body: dict[str, Any]) -> None:
    response = await post_usage(client, token, body)
    assert response.status_code in (200, 201), response.text


async def test_a_record_from_before_a_switch_to_yearly_is_placed_by_the_anchor_then_in_force(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    old_anchor = subscription.billing_cycle_anchor
    assert old_anchor is not None
    # Tokens that outlive the simulated days.
    service = make_token("9001", roles=["service"], lifetime=timedelta(days=400))
    user = make_token("42", lifetime=timedelta(days=400))
    # Ten days of a monthly period: 2,100 minutes (100 over the plan's 2,000), and a call
    # the dashboard reported itself (the telephony backend's copy comes later).
    _move_to(fake_stripe, clock, old_anchor + timedelta(days=10))
    for index, minutes in enumerate(("700", "700", "700")):
        at = old_anchor + timedelta(days=2 + index)
        await _posted(
            client,
            service,
            call(f"call-{index}", minutes, timestamp=at.isoformat(), customer_id=42),
        )
    stamped = (old_anchor + timedelta(days=6)).isoformat()
    await _posted(client, user, call("call-dashboard", "5", timestamp=stamped))

    # Switched to yearly: Stripe restarts the billing cycle (and the anchor) now.
    changed_at = clock.now()
    response = await client.post(
        MANAGE,
        json={"action": "change_plan", "plan_id": subscription.plan_id, "billing_cycle": "yearly"},
        headers=bearer(user),
    )
    assert response.status_code == 200, response.text
    assert datetime.fromtimestamp(stripe_subscription["billing_cycle_anchor"], UTC) == changed_at
    change_invoice = fake_stripe.invoices[stripe_subscription["latest_invoice"]]
    created = fake_stripe.event("invoice.created", change_invoice)
    assert await deliver(client, app, created, timestamp=fake_stripe.now) == "processed"
    # The stub period before the change, closed by it with the full monthly allowance:
    # 2,105 - 2,000 = 105 min x 2.5 = 262.5 -> 263.
    [stub_charge] = await _charges(session)
    assert (stub_charge.period_start, stub_charge.period_end) == (old_anchor, changed_at)
    assert stub_charge.amount == 263

    # An hour later the backend reports a call from day 5, and its own copy of the
    # dashboard's call, 5 minutes longer.
    _move_to(fake_stripe, clock, changed_at + timedelta(hours=1))
    late = (old_anchor + timedelta(days=5)).isoformat()
    await _posted(client, service, call("call-late", "10", timestamp=late, customer_id=42))
    await _posted(client, service, call("call-dashboard", "10", timestamp=stamped, customer_id=42))

    # Both belong to the stub period (the anchor in force when they happened), not to a
    # month counted back from the new anchor with an allowance of its own.
    assert (await _record(session, "call-late")).period_start == old_anchor
    assert (await _record(session, "call-dashboard")).period_start == old_anchor
    stub = await period_totals(session, subscription.id, old_anchor)
    assert stub is not None and stub.minutes_used == Decimal(2_120)
    assert await period_totals(session, subscription.id, changed_at - timedelta(days=30)) is None
    assert await bill_overage_adjustments(app_job_ctx(app)) == 1
    # 120 min x 2.5 = 300 in all, 263 charged: 37 more, nothing credited.
    [_, adjustment] = await _charges(session)
    assert (adjustment.period_start, adjustment.sequence, adjustment.amount) == (
        old_anchor,
        1,
        37,
    )


async def _subscribe_with_usage(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    minutes: str,
) -> tuple[dict[str, Any], UsagePeriodTotals]:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    assert subscription.billing_cycle_anchor is not None
    totals = UsagePeriodTotals(
        subscription_id=subscription.id,
        period_start=subscription.billing_cycle_anchor,
        period_end=add_months(subscription.billing_cycle_anchor, 1),
        minutes_used=Decimal(minutes),
        peak_agents=0,
        record_count=1,
    )
    session.add(totals)
    await session.commit()
    return stripe_subscription, totals


async def _manage(client: httpx.AsyncClient, make_token: TokenFactory, **body: Any) -> None:
    response = await client.post(MANAGE, json=body, headers=bearer(make_token("42")))
    assert response.status_code == 200, response.text


async def test_an_add_on_removed_after_the_period_ended_still_covers_that_period(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    add_on = await create_synced_add_on(session, fake_stripe, slug="extra-minutes")
    # 2,900 minutes: within the plan's 2,000 and the add-on's 1,000, held all period.
    stripe_subscription, totals = await _subscribe_with_usage(
        client, make_token, session, fake_stripe, "2900"
    )
    await _manage(client, make_token, action="add_addon", addon_id=add_on.id, quantity=1)
    _move_to(fake_stripe, clock, totals.period_end)
    draft = fake_stripe.renew_subscription(stripe_subscription["id"])
    created = fake_stripe.event("invoice.created", draft)
    # The add-on is removed an hour after the period ended, and the renewal's event reaches
    # us (Stripe retrying it) after that.
    _move_to(fake_stripe, clock, totals.period_end + timedelta(hours=1))
    await _manage(client, make_token, action="remove_addon", addon_id=add_on.id)

    assert await deliver(client, app, created, timestamp=fake_stripe.now) == "processed"

    assert await _charges(session) == []
    await session.refresh(totals)
    assert (totals.overage_billed_at, totals.closed_included_minutes) == (clock.now(), 3_000)


async def test_an_add_on_bought_an_hour_before_the_end_covers_an_hour_of_its_minutes(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    add_on = await create_synced_add_on(session, fake_stripe, slug="extra-minutes")
    stripe_subscription, totals = await _subscribe_with_usage(
        client, make_token, session, fake_stripe, "2900"
    )
    _move_to(fake_stripe, clock, totals.period_end - timedelta(hours=1))
    await _manage(client, make_token, action="add_addon", addon_id=add_on.id, quantity=1)
    _move_to(fake_stripe, clock, totals.period_end)
    draft = fake_stripe.renew_subscription(stripe_subscription["id"])

    created = fake_stripe.event("invoice.created", draft)
    assert await deliver(client, app, created, timestamp=fake_stripe.now) == "processed"

    # Held for 1 hour of the period's 720 (30 days): 1,000 x 1/720 = 1.39 -> 1 extra minute
    # (rounded down: no minute is given that was not held). 2,900 - 2,001 = 899 min x 2.5 =
    # 2,247.5 -> 2,248.
    [charge] = await _charges(session)
    assert (charge.minutes_over, charge.amount) == (Decimal(899), 2_248)
