"""A billing-cycle change made now: what moves with the plan, and which usage period it
closes (issue: usage terms that follow the account's history)."""

from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.models import AddOn, SubscriptionPlan
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_add_on, create_synced_plan
from tests.stripe.fake import FakeStripe

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
