"""A billing-cycle change made now: what moves with the plan, and which usage period it
closes (issue: usage terms that follow the account's history)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.core.periods import add_months
from app.models import AddOn, OverageCharge, SubscriptionPlan, UsagePeriodTotals
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_add_on, create_synced_plan
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import deliver, local_subscription

SUBSCRIBE = "/subscriptions/api/subscribe/"
MANAGE = "/subscriptions/api/manage/"


async def _subscribe_monthly_with_add_on(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    *,
    payment_method: str = "pm_card_visa",
) -> tuple[SubscriptionPlan, AddOn, dict[str, Any]]:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    add_on = await create_synced_add_on(session, fake_stripe)
    headers = bearer(make_token("42"))
    subscribed = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": payment_method},
        headers=headers,
    )
    assert subscribed.status_code == 200, subscribed.text
    added = await client.post(
        MANAGE, json={"action": "add_addon", "addon_id": add_on.id, "quantity": 2}, headers=headers
    )
    assert added.status_code == 200, added.text
    [stripe_subscription] = fake_stripe.subscriptions.values()
    return plan, add_on, stripe_subscription


async def test_a_switch_to_yearly_moves_the_add_ons_to_yearly_prices_in_the_same_update(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    plan, add_on, stripe_subscription = await _subscribe_monthly_with_add_on(
        client, make_token, session, fake_stripe
    )

    response = await client.post(
        MANAGE,
        json={"action": "change_plan", "plan_id": plan.id, "billing_cycle": "yearly"},
        headers=bearer(make_token("42")),
    )

    assert response.status_code == 200, response.text
    body = response.json()["subscription"]
    assert body["billing_cycle"] == "yearly"
    assert [(a["slug"], a["quantity"]) for a in body["add_ons"]] == [("extra-agents", 2)]
    prices = sorted(
        (item["price"]["id"], item["quantity"]) for item in stripe_subscription["items"]["data"]
    )
    assert prices == sorted([(plan.stripe_yearly_price_id, 1), (add_on.stripe_yearly_price_id, 2)])
    # One update moved both: Stripe never held a yearly plan beside a monthly add-on.
    [update] = fake_stripe.calls("POST", f"/v1/subscriptions/{stripe_subscription['id']}")
    assert len(update.params["items"]) == 2


async def _usage_in_current_period(session: AsyncSession, minutes: str) -> UsagePeriodTotals:
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
    return totals


def _pay_with(fake_stripe: FakeStripe, payment_method: str) -> None:
    [customer] = fake_stripe.customers.values()
    fake_stripe.add_payment_method(payment_method, customer=customer["id"])
    customer["invoice_settings"]["default_payment_method"] = payment_method


async def _charges(session: AsyncSession) -> list[OverageCharge]:
    query = select(OverageCharge).execution_options(populate_existing=True)
    return list((await session.scalars(query)).all())


async def test_a_declined_switch_to_yearly_closes_no_usage_period(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    plan, _, stripe_subscription = await _subscribe_monthly_with_add_on(
        client, make_token, session, fake_stripe
    )
    totals = await _usage_in_current_period(session, "4100")
    fake_stripe.now += 10 * 86_400
    clock.set(datetime.fromtimestamp(fake_stripe.now, UTC))
    _pay_with(fake_stripe, "pm_card_chargeDeclined")

    response = await client.post(
        MANAGE,
        json={"action": "change_plan", "plan_id": plan.id, "billing_cycle": "yearly"},
        headers=bearer(make_token("42")),
    )
    assert response.status_code == 402, response.text
    # Stripe created (and tried to charge) the change's invoice: the new price in full, not
    # a proration, starting now. The change itself waits in `pending_update`.
    invoice = fake_stripe.invoices[stripe_subscription["latest_invoice"]]
    assert invoice["billing_reason"] == "subscription_update"
    assert stripe_subscription["pending_update"] is not None
    event = fake_stripe.event("invoice.created", invoice)

    assert await deliver(client, app, event, timestamp=fake_stripe.now) == "processed"

    # The monthly period runs on: nothing closed, nothing charged.
    assert await _charges(session) == []
    await session.refresh(totals)
    assert totals.overage_billed_at is None
    assert (await local_subscription(session)).billing_cycle == "monthly"


async def test_a_switch_to_yearly_waiting_for_3ds_closes_the_period_once_it_is_paid(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    plan, _, stripe_subscription = await _subscribe_monthly_with_add_on(
        client, make_token, session, fake_stripe
    )
    totals = await _usage_in_current_period(session, "4100")
    fake_stripe.now += 10 * 86_400
    clock.set(datetime.fromtimestamp(fake_stripe.now, UTC))
    _pay_with(fake_stripe, "pm_card_authenticationRequired")

    response = await client.post(
        MANAGE,
        json={"action": "change_plan", "plan_id": plan.id, "billing_cycle": "yearly"},
        headers=bearer(make_token("42")),
    )
    assert response.status_code == 200, response.text
    assert response.json()["requires_action"] is True
    invoice = fake_stripe.invoices[stripe_subscription["latest_invoice"]]
    created = fake_stripe.event("invoice.created", invoice)
    assert await deliver(client, app, created, timestamp=fake_stripe.now) == "processed"
    assert await _charges(session) == []

    # The customer authenticates ten minutes later: Stripe applies the change and says so.
    fake_stripe.now += 600
    clock.set(datetime.fromtimestamp(fake_stripe.now, UTC))
    fake_stripe.pay_invoice_out_of_band(invoice["id"])
    updated = fake_stripe.event("customer.subscription.updated", stripe_subscription)
    paid = fake_stripe.event("invoice.paid", fake_stripe.invoices[invoice["id"]])
    assert await deliver(client, app, updated, timestamp=fake_stripe.now) == "processed"
    assert await deliver(client, app, paid, timestamp=fake_stripe.now) == "processed"

    # The monthly period is closed by the applied change: 2,000 + 2 x 1,000 included, 100
    # min over x 2.5 = 250, billed with
    # the next invoice (the change's own is paid already).
    [charge] = await _charges(session)
    assert (charge.period_start, charge.amount) == (totals.period_start, 250)
    assert (await local_subscription(session)).billing_cycle == "yearly"
