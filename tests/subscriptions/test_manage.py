"""GET/POST manage/ and manage/preview/: every action, through the fake Stripe."""

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Subscription, SubscriptionPlan
from app.subscriptions.stripe_state import plan_change_effective_at
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_add_on, create_synced_plan
from tests.stripe.fake import FakeStripe

SUBSCRIBE = "/subscriptions/api/subscribe/"
MANAGE = "/subscriptions/api/manage/"
PREVIEW = "/subscriptions/api/manage/preview/"


class Account:
    def __init__(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        self.client = client
        self.headers = headers

    async def act(self, **body: Any) -> httpx.Response:
        return await self.client.post(MANAGE, json=body, headers=self.headers)

    async def current(self) -> dict[str, Any]:
        response = await self.client.get(MANAGE, headers=self.headers)
        assert response.status_code == 200, response.text
        subscription: dict[str, Any] = response.json()["subscription"]
        return subscription


@pytest.fixture
async def plans(session: AsyncSession, fake_stripe: FakeStripe) -> dict[str, SubscriptionPlan]:
    return {
        "starter": await create_synced_plan(
            session,
            fake_stripe,
            slug="starter",
            monthly_price=4_900,
            yearly_price=49_000,
            trial_days=0,
        ),
        "pro": await create_synced_plan(
            session,
            fake_stripe,
            slug="pro",
            monthly_price=14_900,
            yearly_price=149_000,
            trial_days=0,
        ),
    }


async def _subscribed(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    plan: SubscriptionPlan,
    billing_cycle: str = "monthly",
) -> Account:
    account = Account(client, bearer(make_token("42")))
    response = await client.post(
        SUBSCRIBE,
        json={
            "plan_id": plan.id,
            "payment_method_id": "pm_card_visa",
            "billing_cycle": billing_cycle,
        },
        headers=account.headers,
    )
    assert response.status_code == 200, response.text
    return account


async def test_manage_without_a_subscription_is_404(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    response = await client.get(MANAGE, headers=bearer(make_token("42")))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "subscription_not_found"


async def test_upgrade_is_charged_now_with_the_previewed_proration_date(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    account = await _subscribed(client, make_token, plans["starter"])

    preview = await client.get(
        PREVIEW, params={"plan_id": plans["pro"].id}, headers=account.headers
    )
    assert preview.status_code == 200, preview.text
    previewed = preview.json()["preview"]
    assert previewed["takes_effect"] == "now"
    assert previewed["amount_due_now"] == 10_000
    assert previewed["next_invoice_amount"] == 14_900

    upgraded = await account.act(
        action="upgrade", plan_id=plans["pro"].id, proration_date=previewed["proration_date"]
    )

    assert upgraded.status_code == 200, upgraded.text
    assert upgraded.json()["subscription"]["plan"]["slug"] == "pro"
    [update] = [
        call for call in fake_stripe.calls("POST", "/v1/subscriptions/") if "items" in call.params
    ]
    assert update.params["proration_behavior"] == "always_invoice"
    assert update.params["payment_behavior"] == "pending_if_incomplete"
    assert update.params["proration_date"] == str(previewed["proration_date"])
    assert update.params["items"][0]["price"] == plans["pro"].stripe_monthly_price_id


async def test_a_declined_upgrade_is_not_granted(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    account = await _subscribed(client, make_token, plans["starter"])
    [customer] = fake_stripe.customers.values()
    fake_stripe.add_payment_method("pm_card_chargeDeclined", customer=customer["id"])
    customer["invoice_settings"]["default_payment_method"] = "pm_card_chargeDeclined"

    response = await account.act(action="upgrade", plan_id=plans["pro"].id)

    assert response.status_code == 402
    assert (await account.current())["plan"]["slug"] == "starter"


async def test_downgrade_waits_for_the_period_end_and_can_be_undone(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    account = await _subscribed(client, make_token, plans["pro"])

    downgraded = await account.act(action="downgrade", plan_id=plans["starter"].id)

    assert downgraded.status_code == 200, downgraded.text
    subscription = downgraded.json()["subscription"]
    assert subscription["plan"]["slug"] == "pro"
    assert subscription["pending_change"]["plan"]["slug"] == "starter"
    assert subscription["pending_change"]["effective_at"] == subscription["current_period_end"]
    [create] = fake_stripe.calls("POST", "/v1/subscription_schedules")
    assert create.params["from_subscription"] == subscription["stripe_subscription_id"]
    [schedule_update] = [
        c for c in fake_stripe.calls("POST", "/v1/subscription_schedules/") if "phases" in c.params
    ]
    assert schedule_update.params["end_behavior"] == "release"
    phases = schedule_update.params["phases"]
    assert phases[0]["items"][0]["price"] == plans["pro"].stripe_monthly_price_id
    assert phases[1]["items"][0]["price"] == plans["starter"].stripe_monthly_price_id
    assert (await account.current())["pending_change"]["plan"]["slug"] == "starter"

    undone = await account.act(action="cancel_pending_change")

    assert undone.status_code == 200, undone.text
    assert undone.json()["subscription"]["pending_change"] is None
    assert len([c for c in fake_stripe.requests if c.path.endswith("/release")]) == 1
    again = await account.act(action="cancel_pending_change")
    assert (again.status_code, again.json()["error"]["code"]) == (409, "no_pending_change")


async def test_change_plan_decides_by_cycle_then_price(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    account = await _subscribed(client, make_token, plans["pro"])

    # Longer cycle: at once, even to a cheaper plan.
    to_yearly = await account.act(
        action="change_plan", plan_id=plans["starter"].id, billing_cycle="yearly"
    )
    assert to_yearly.status_code == 200, to_yearly.text
    assert to_yearly.json()["subscription"]["billing_cycle"] == "yearly"
    assert to_yearly.json()["subscription"]["plan"]["slug"] == "starter"

    # Shorter cycle: at the period end, even to a dearer plan.
    to_monthly = await account.act(
        action="change_plan", plan_id=plans["pro"].id, billing_cycle="monthly"
    )
    assert to_monthly.status_code == 200, to_monthly.text
    pending = to_monthly.json()["subscription"]["pending_change"]
    assert pending["billing_cycle"] == "monthly" and pending["plan"]["slug"] == "pro"


async def test_changes_that_do_not_apply_are_409_with_the_reason(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    account = await _subscribed(client, make_token, plans["pro"])

    same = await account.act(action="downgrade", plan_id=plans["pro"].id)
    not_up = await account.act(action="upgrade", plan_id=plans["starter"].id)
    unknown = await account.act(action="upgrade", plan_id=9999)

    assert (same.status_code, same.json()["error"]["code"]) == (409, "already_on_plan")
    assert (not_up.status_code, not_up.json()["error"]["code"]) == (409, "not_an_upgrade")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "plan_not_found")


async def test_cancel_reactivate_and_cancel_now(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    account = await _subscribed(client, make_token, plans["starter"])

    canceled = await account.act(action="cancel")
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["subscription"]["cancel_at_period_end"] is True
    twice = await account.act(action="cancel")
    assert (twice.status_code, twice.json()["error"]["code"]) == (409, "already_canceling")

    reactivated = await account.act(action="reactivate")
    assert reactivated.json()["subscription"]["cancel_at_period_end"] is False
    active = await account.act(action="reactivate")
    assert (active.status_code, active.json()["error"]["code"]) == (
        409,
        "subscription_not_canceling",
    )

    # Cancel at the period end again: a new Stripe call, not a replay of the first one.
    assert (await account.act(action="cancel")).json()["subscription"]["cancel_at_period_end"]
    cancel_calls = [
        c
        for c in fake_stripe.calls("POST", "/v1/subscriptions/")
        if "cancel_at_period_end" in c.params
    ]
    assert len({call.idempotency_key for call in cancel_calls}) == 3

    ended = await account.act(action="cancel", at_period_end=False)
    assert ended.status_code == 200, ended.text
    assert ended.json()["subscription"]["status"] == "canceled"
    after = await account.act(action="cancel", at_period_end=False)
    assert (after.status_code, after.json()["error"]["code"]) == (409, "already_canceled")
    assert (await account.current())["status"] == "canceled"


async def test_add_and_remove_add_ons(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    add_on = await create_synced_add_on(session, fake_stripe)
    account = await _subscribed(client, make_token, plans["starter"])

    added = await account.act(action="add_addon", addon_id=add_on.id, quantity=3)
    assert added.status_code == 200, added.text
    assert [(a["slug"], a["quantity"]) for a in added.json()["subscription"]["add_ons"]] == [
        ("extra-agents", 3)
    ]
    [item_create] = fake_stripe.calls("POST", "/v1/subscription_items")
    assert item_create.params["proration_behavior"] == "always_invoice"

    fewer = await account.act(action="remove_addon", addon_id=add_on.id, quantity=1)
    assert [a["quantity"] for a in fewer.json()["subscription"]["add_ons"]] == [2]

    removed = await account.act(action="remove_addon", addon_id=add_on.id)
    assert removed.json()["subscription"]["add_ons"] == []
    missing = await account.act(action="remove_addon", addon_id=add_on.id)
    assert (missing.status_code, missing.json()["error"]["code"]) == (
        409,
        "add_on_not_on_subscription",
    )
    too_many = await account.act(action="add_addon", addon_id=add_on.id, quantity=11)
    assert too_many.status_code == 422


async def test_a_stripe_outage_during_an_upgrade_changes_nothing_and_the_retry_completes(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    account = await _subscribed(client, make_token, plans["starter"])
    fake_stripe.fail_next("POST", "/v1/subscriptions/", status=500)

    failed = await account.act(
        action="upgrade", plan_id=plans["pro"].id, proration_date=1_795_608_000
    )

    assert failed.status_code == 503
    assert (await account.current())["plan"]["slug"] == "starter"

    retried = await account.act(
        action="upgrade", plan_id=plans["pro"].id, proration_date=1_795_608_000
    )

    assert retried.status_code == 200, retried.text
    assert retried.json()["subscription"]["plan"]["slug"] == "pro"
    updates = [c for c in fake_stripe.calls("POST", "/v1/subscriptions/") if "items" in c.params]
    # Stripe keeps a 500 under its key for a day: the retry must not reuse it. Moving the item
    # to the price it may already have is harmless, so a new key cannot charge twice.
    assert len(updates) == 2 and updates[0].idempotency_key != updates[1].idempotency_key
    invoices = [i for i in fake_stripe.invoices.values() if i["amount_due"] == 10_000]
    assert len(invoices) == 1


async def test_an_upgrade_needing_sca_returns_the_client_secret_and_waits(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    account = await _subscribed(client, make_token, plans["starter"])
    [customer] = fake_stripe.customers.values()
    fake_stripe.add_payment_method("pm_card_authenticationRequired", customer=customer["id"])
    customer["invoice_settings"]["default_payment_method"] = "pm_card_authenticationRequired"

    response = await account.act(action="upgrade", plan_id=plans["pro"].id)

    assert response.status_code == 200, response.text
    assert response.json()["requires_action"] is True
    assert response.json()["client_secret"]
    assert response.json()["subscription"]["plan"]["slug"] == "starter"


async def test_an_add_on_removed_and_added_again_is_on_stripe_again(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    add_on = await create_synced_add_on(session, fake_stripe)
    account = await _subscribed(client, make_token, plans["starter"])

    for action in ("add_addon", "remove_addon", "add_addon"):
        response = await account.act(action=action, addon_id=add_on.id, quantity=1)
        assert response.status_code == 200, response.text

    assert [a["quantity"] for a in (await account.current())["add_ons"]] == [1]
    [stripe_subscription] = fake_stripe.subscriptions.values()
    prices = [item["price"]["id"] for item in stripe_subscription["items"]["data"]]
    assert add_on.stripe_monthly_price_id in prices


async def test_add_on_changes_wait_until_a_scheduled_plan_change_is_cancelled(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    add_on = await create_synced_add_on(session, fake_stripe)
    account = await _subscribed(client, make_token, plans["pro"])
    assert (await account.act(action="downgrade", plan_id=plans["starter"].id)).status_code == 200

    response = await account.act(action="add_addon", addon_id=add_on.id, quantity=1)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "pending_change_exists"
    assert fake_stripe.calls("POST", "/v1/subscription_items") == []


async def test_a_proration_date_outside_the_period_is_refused(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    plans: dict[str, SubscriptionPlan],
) -> None:
    account = await _subscribed(client, make_token, plans["starter"])

    response = await account.act(action="upgrade", plan_id=plans["pro"].id, proration_date=1)

    assert response.status_code == 422
    assert (await account.current())["plan"]["slug"] == "starter"


def test_a_plan_change_is_dated_from_the_usage_month_it_was_seen_in() -> None:
    anchor = datetime(2026, 1, 15, tzinfo=UTC)
    yearly = Subscription(
        billing_cycle="yearly", billing_cycle_anchor=anchor, current_period_start=anchor
    )
    monthly_start = datetime(2026, 11, 15, tzinfo=UTC)
    monthly = Subscription(
        billing_cycle="monthly", billing_cycle_anchor=anchor, current_period_start=monthly_start
    )

    # A yearly upgrade half an hour after a month ended prices the new month, not the year.
    assert plan_change_effective_at(
        yearly, anchor, datetime(2026, 6, 15, 0, 30, tzinfo=UTC)
    ) == datetime(2026, 6, 15, tzinfo=UTC)
    # A monthly upgrade mid-period prices the whole period.
    assert (
        plan_change_effective_at(monthly, monthly_start, datetime(2026, 11, 28, tzinfo=UTC))
        == monthly_start
    )
    # A renewal onto a new plan, seen after the renewal, starts at the renewal.
    renewal = datetime(2026, 12, 15, tzinfo=UTC)
    assert (
        plan_change_effective_at(monthly, renewal, datetime(2026, 12, 15, 0, 5, tzinfo=UTC))
        == renewal
    )
