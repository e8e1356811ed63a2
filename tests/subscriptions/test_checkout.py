"""POST checkout-session/ and billing-portal/, and the webhooks that finish a checkout, end to
end against the Stripe fake."""

from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.models import OperatorAlert, Subscription, SubscriptionPlan
from app.subscriptions.subscribe import RESERVATION_LEASE
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_add_on, create_synced_plan
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import deliver, event_at

CHECKOUT = "/subscriptions/api/checkout-session/"
PORTAL = "/subscriptions/api/billing-portal/"
SUBSCRIBE = "/subscriptions/api/subscribe/"
MANAGE = "/subscriptions/api/manage/"


async def _subscriptions(session: AsyncSession) -> list[Subscription]:
    query = select(Subscription).order_by(Subscription.id).execution_options(populate_existing=True)
    return list((await session.scalars(query)).all())


async def _checkout(
    client: httpx.AsyncClient, token: str, plan: SubscriptionPlan, **body: Any
) -> httpx.Response:
    return await client.post(
        CHECKOUT,
        json={"plan_id": plan.id, "billing_cycle": "monthly", **body},
        headers=bearer(token),
    )


async def test_a_checkout_session_has_the_prices_trial_and_urls_of_a_subscribe(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=7)
    add_on = await create_synced_add_on(session, fake_stripe)

    response = await _checkout(
        client,
        make_token("42"),
        plan,
        billing_cycle="yearly",
        add_ons=[{"addon_id": add_on.id, "quantity": 2}],
    )

    assert response.status_code == 200, response.text
    answered = response.json()["checkout_session"]
    [create] = fake_stripe.calls("POST", "/v1/checkout/sessions")
    [reservation] = await _subscriptions(session)
    assert answered["url"] == fake_stripe.checkout_sessions[answered["id"]]["url"]
    assert create.params["mode"] == "subscription"
    assert create.params["customer"] == next(iter(fake_stripe.customers))
    assert create.params["line_items"] == [
        {"price": plan.stripe_yearly_price_id, "quantity": "1"},
        {"price": add_on.stripe_yearly_price_id, "quantity": "2"},
    ]
    subscription_data = create.params["subscription_data"]
    assert subscription_data["trial_period_days"] == "7"
    assert subscription_data["metadata"]["billing_subscription_id"] == str(reservation.id)
    assert subscription_data["pending_invoice_item_interval"] == {"interval": "month"}
    assert create.params["success_url"] == (
        "http://localhost:3000/billing/success?session_id={CHECKOUT_SESSION_ID}"
    )
    assert create.params["cancel_url"] == "http://localhost:3000/billing/cancel"
    fingerprint = reservation.request_fingerprint or ""
    expires_at = int(fake_stripe.checkout_sessions[answered["id"]]["expires_at"])
    assert create.idempotency_key == (
        f"checkout:{reservation.id}:{fingerprint[:32]}:first:{expires_at}"
    )
    assert (reservation.status, reservation.checkout_session_id) == ("pending", answered["id"])


@pytest.mark.parametrize("subscription_event_first", [False, True])
async def test_a_completed_checkout_delivered_twice_in_any_order_is_one_subscription(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    subscription_event_first: bool,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    checkout_id = (await _checkout(client, token, plan)).json()["checkout_session"]["id"]
    completed = fake_stripe.complete_checkout_session(checkout_id)
    stripe_subscription = fake_stripe.subscriptions[completed["subscription"]]
    now = fake_stripe.now
    created = event_at(fake_stripe, "customer.subscription.created", stripe_subscription, now)
    first_completed = event_at(fake_stripe, "checkout.session.completed", completed, now)
    again_completed = event_at(fake_stripe, "checkout.session.completed", completed, now + 1)

    order = (
        [first_completed, created] if not subscription_event_first else [created, first_completed]
    )
    assert await deliver(client, app, order[0]) == "processed"
    # Either event alone links the reservation to the subscription Stripe created.
    [linked] = await _subscriptions(session)
    assert (linked.stripe_subscription_id, linked.status) == (stripe_subscription["id"], "active")
    for event in [order[1], first_completed, again_completed]:
        assert await deliver(client, app, event) in ("processed", "skipped")

    [subscription] = await _subscriptions(session)
    assert subscription.stripe_subscription_id == stripe_subscription["id"]
    assert subscription.status == "active"
    manage = await client.get(MANAGE, headers=bearer(token))
    assert manage.json()["subscription"]["plan"]["id"] == plan.id
    # The slot is the subscription's now: a second checkout or subscribe is refused.
    again = await _checkout(client, token, plan)
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "subscription_exists"


async def test_an_expired_checkout_frees_the_account_for_a_subscribe(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    checkout_id = (await _checkout(client, token, plan)).json()["checkout_session"]["id"]
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_visa"}

    while_open = await client.post(SUBSCRIBE, json=body, headers=bearer(token))
    expired = fake_stripe.expire_checkout_session(checkout_id)
    outcome = await deliver(
        client, app, event_at(fake_stripe, "checkout.session.expired", expired, fake_stripe.now)
    )
    after_expiry = await client.post(SUBSCRIBE, json=body, headers=bearer(token))

    assert while_open.status_code == 409
    assert while_open.json()["error"]["details"] == {"status": "checkout_open"}
    assert outcome == "processed"
    assert after_expiry.status_code == 200, after_expiry.text
    [subscription] = await _subscriptions(session)
    assert subscription.status == "active"


async def test_a_new_checkout_expires_the_open_one_before_it_can_be_paid(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    monthly = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    first = (await _checkout(client, token, monthly)).json()["checkout_session"]["id"]

    second = await _checkout(client, token, monthly, billing_cycle="yearly")
    # The first session's expiry reaches us afterwards: it releases nothing of the second's.
    expired = event_at(
        fake_stripe,
        "checkout.session.expired",
        fake_stripe.checkout_sessions[first],
        fake_stripe.now,
    )
    assert await deliver(client, app, expired) == "processed"

    assert second.status_code == 200, second.text
    second_id = second.json()["checkout_session"]["id"]
    assert second_id != first
    assert fake_stripe.checkout_sessions[first]["status"] == "expired"
    assert fake_stripe.checkout_sessions[second_id]["status"] == "open"
    [reservation] = await _subscriptions(session)
    assert (reservation.checkout_session_id, reservation.billing_cycle) == (second_id, "yearly")
    assert reservation.status == "pending"


async def test_a_checkout_paid_meanwhile_is_not_replaced(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    first = (await _checkout(client, token, plan)).json()["checkout_session"]["id"]
    # Paid on Stripe; its webhook has not arrived yet.
    fake_stripe.complete_checkout_session(first)

    second = await _checkout(client, token, plan)

    assert second.status_code == 409
    assert second.json()["error"]["code"] == "subscription_exists"
    assert len(fake_stripe.checkout_sessions) == 1
    assert len(fake_stripe.subscriptions) == 1


async def test_a_checkout_for_an_account_with_a_subscription_is_409(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_visa"}
    assert (await client.post(SUBSCRIBE, json=body, headers=bearer(token))).status_code == 200

    response = await _checkout(client, token, plan)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "subscription_exists"
    assert fake_stripe.calls("POST", "/v1/checkout/sessions") == []


async def test_a_checkout_for_an_unknown_plan_or_add_on_is_404_and_reserves_nothing(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")

    unknown_plan = await client.post(
        CHECKOUT, json={"plan_id": 999_999, "billing_cycle": "monthly"}, headers=bearer(token)
    )
    unknown_add_on = await _checkout(client, token, plan, add_ons=[{"addon_id": 999_999}])

    assert unknown_plan.status_code == 404
    assert unknown_plan.json()["error"]["code"] == "plan_not_found"
    assert unknown_add_on.status_code == 404
    assert unknown_add_on.json()["error"]["code"] == "add_on_not_found"
    assert await _subscriptions(session) == []
    assert fake_stripe.calls("POST", "/v1/checkout/sessions") == []


async def test_the_billing_portal_answers_a_session_url_returning_to_the_dashboard(
    client: httpx.AsyncClient, make_token: TokenFactory, fake_stripe: FakeStripe
) -> None:
    response = await client.post(PORTAL, headers=bearer(make_token("42")))

    assert response.status_code == 200, response.text
    [portal] = fake_stripe.portal_sessions.values()
    assert response.json()["billing_portal"]["url"] == portal["url"]
    [create] = fake_stripe.calls("POST", "/v1/billing_portal/sessions")
    assert create.params == {
        "customer": next(iter(fake_stripe.customers)),
        "return_url": "http://localhost:3000/billing",
    }


async def test_a_cancellation_made_in_the_portal_arrives_as_a_webhook_and_is_applied(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    checkout_id = (await _checkout(client, token, plan)).json()["checkout_session"]["id"]
    completed = fake_stripe.complete_checkout_session(checkout_id)
    now = fake_stripe.now
    await deliver(client, app, event_at(fake_stripe, "checkout.session.completed", completed, now))
    assert (await client.post(PORTAL, headers=bearer(token))).status_code == 200

    # The customer cancels in the portal: Stripe changes the subscription and tells us.
    stripe_subscription = fake_stripe.subscriptions[completed["subscription"]]
    stripe_subscription["cancel_at_period_end"] = True
    updated = event_at(fake_stripe, "customer.subscription.updated", stripe_subscription, now + 60)
    assert await deliver(client, app, updated) == "processed"

    manage = await client.get(MANAGE, headers=bearer(token))
    assert manage.json()["subscription"]["cancel_at_period_end"] is True


async def test_a_paid_checkout_that_no_reservation_expects_raises_an_operator_alert(
    client: httpx.AsyncClient,
    app: FastAPI,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    customer = fake_stripe.add_customer()["id"]
    # A session made outside this service's rules (say, by hand on Stripe's dashboard).
    stray = fake_stripe._create_checkout_session(
        {
            "mode": "subscription",
            "customer": customer,
            "line_items": [{"price": plan.stripe_monthly_price_id, "quantity": "1"}],
            "subscription_data": {"metadata": {"billing_subscription_id": "999999"}},
            "success_url": "https://dashboard.example/ok",
        }
    )
    completed = fake_stripe.complete_checkout_session(stray["id"])
    event = event_at(fake_stripe, "checkout.session.completed", completed, fake_stripe.now)

    assert await deliver(client, app, event) == "processed"

    assert await _subscriptions(session) == []
    [alert] = (await session.scalars(select(OperatorAlert))).all()
    assert alert.kind == "checkout_without_reservation"
    assert alert.details == {
        "checkout_session": stray["id"],
        "subscription": completed["subscription"],
    }


def _open_sessions(fake_stripe: FakeStripe) -> list[str]:
    return [
        key for key, value in fake_stripe.checkout_sessions.items() if value["status"] == "open"
    ]


async def test_a_checkout_whose_answer_was_lost_leaves_one_payable_session_after_the_retry(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    # Stripe creates the session, then the answer is lost in a timeout.
    fake_stripe.fail_next("POST", "/v1/checkout/sessions", timeout=True, after_acting=True)

    failed = await _checkout(client, token, plan)
    [lost] = list(fake_stripe.checkout_sessions)
    [kept] = await _subscriptions(session)
    retried = await _checkout(client, token, plan)

    assert failed.status_code == 503
    # The slot is kept (a payment of the lost session would need it), without a lease.
    assert (kept.status, kept.checkout_session_id, kept.reserved_until) == ("pending", None, None)
    assert retried.status_code == 200, retried.text
    answered = retried.json()["checkout_session"]["id"]
    assert fake_stripe.checkout_sessions[lost]["status"] == "expired"
    assert _open_sessions(fake_stripe) == [answered]
    [reservation] = await _subscriptions(session)
    assert (reservation.id, reservation.checkout_session_id) == (kept.id, answered)


async def test_a_checkout_refused_by_stripe_frees_the_account(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    fake_stripe.fail_next("POST", "/v1/checkout/sessions", status=400)

    refused = await _checkout(client, make_token("42"), plan)

    assert refused.status_code == 500
    assert await _subscriptions(session) == []
    assert fake_stripe.checkout_sessions == {}


async def _abandon_after_stripe_created_the_session(
    client: httpx.AsyncClient,
    session: AsyncSession,
    clock: FrozenClock,
    token: str,
    plan: SubscriptionPlan,
) -> str:
    """A checkout whose process died after Stripe created its session, before recording it:
    the row names no session and holds a lease."""
    created = (await _checkout(client, token, plan)).json()["checkout_session"]["id"]
    [reservation] = await _subscriptions(session)
    reservation.checkout_session_id = None
    reservation.reserved_until = clock.now() + RESERVATION_LEASE
    await session.commit()
    return str(created)


async def test_an_abandoned_checkout_is_409_until_its_lease_lapses_then_taken_over(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    abandoned = await _abandon_after_stripe_created_the_session(client, session, clock, token, plan)

    during_lease = await _checkout(client, token, plan)
    clock.advance(RESERVATION_LEASE + timedelta(seconds=1))
    after_lease = await _checkout(client, token, plan)

    assert during_lease.status_code == 409
    assert during_lease.json()["error"]["details"] == {"status": "pending"}
    assert after_lease.status_code == 200, after_lease.text
    answered = after_lease.json()["checkout_session"]["id"]
    assert fake_stripe.checkout_sessions[abandoned]["status"] == "expired"
    assert _open_sessions(fake_stripe) == [answered]
    [reservation] = await _subscriptions(session)
    assert reservation.checkout_session_id == answered


async def test_a_subscribe_taking_over_an_abandoned_checkout_expires_its_session(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    abandoned = await _abandon_after_stripe_created_the_session(client, session, clock, token, plan)
    clock.advance(RESERVATION_LEASE + timedelta(seconds=1))

    subscribed = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"},
        headers=bearer(token),
    )

    assert subscribed.status_code == 200, subscribed.text
    assert fake_stripe.checkout_sessions[abandoned]["status"] == "expired"
    assert _open_sessions(fake_stripe) == []
    assert len(fake_stripe.subscriptions) == 1


async def test_a_checkout_after_a_subscribe_whose_answer_was_lost_finds_its_subscription(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = make_token("42")
    # Stripe creates (and charges) the subscription, then the answer is lost.
    fake_stripe.fail_next("POST", "/v1/subscriptions", timeout=True, after_acting=True)
    lost = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"},
        headers=bearer(token),
    )

    checkout = await _checkout(client, token, plan)

    assert lost.status_code == 503
    assert checkout.status_code == 409
    assert checkout.json()["error"]["details"] == {"status": "active"}
    assert fake_stripe.checkout_sessions == {}
    [stripe_subscription] = fake_stripe.subscriptions
    [reservation] = await _subscriptions(session)
    assert (reservation.stripe_subscription_id, reservation.status) == (
        stripe_subscription,
        "active",
    )
