"""POST subscribe/ end to end, with Stripe's HTTP API faked by respx."""

import asyncio

import httpx
import pytest
import stripe as stripe_python
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer, PaymentMethod, Subscription
from app.subscriptions.stripe_state import refresh_from_stripe
from tests.conftest import TokenFactory, bearer
from tests.factories import create_plan, create_synced_add_on, create_synced_plan
from tests.stripe.fake import FakeStripe

SUBSCRIBE = "/subscriptions/api/subscribe/"
MANAGE = "/subscriptions/api/manage/"


async def _subscriptions(session: AsyncSession) -> list[Subscription]:
    query = select(Subscription).order_by(Subscription.id).execution_options(populate_existing=True)
    return list((await session.scalars(query)).all())


async def test_subscribe_without_trial_charges_now_and_records_the_subscription(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_visa", "billing_cycle": "monthly"}

    response = await client.post(SUBSCRIBE, json=body, headers=bearer(make_token("42")))

    assert response.status_code == 200, response.text
    data = response.json()
    assert data["success"] is True and data["requires_action"] is False
    assert data["subscription"]["status"] == "active"
    assert data["subscription"]["plan"]["id"] == plan.id
    assert data["subscription"]["current_period_end"] is not None

    [create] = fake_stripe.calls("POST", "/v1/subscriptions")
    assert create.params["payment_behavior"] == "allow_incomplete"
    assert create.params["billing_mode"] == {"type": "flexible"}
    assert create.params["items"] == [{"price": plan.stripe_monthly_price_id, "quantity": "1"}]
    assert "trial_period_days" not in create.params
    assert create.idempotency_key is not None and create.idempotency_key.startswith("subscribe:")
    assert {request.stripe_version for request in fake_stripe.requests} == {
        stripe_python.api_version
    }
    [customer_create] = fake_stripe.calls("POST", "/v1/customers")
    assert customer_create.params["metadata"] == {"dashboard_user_id": "42"}

    [subscription] = await _subscriptions(session)
    assert subscription.status == "active"
    assert subscription.stripe_subscription_id == create_response_id(fake_stripe)
    cards = (await session.scalars(select(PaymentMethod))).all()
    assert [(card.stripe_payment_method_id, card.is_default) for card in cards] == [
        ("pm_card_visa", True)
    ]


def create_response_id(fake_stripe: FakeStripe) -> str:
    [subscription_id] = list(fake_stripe.subscriptions)
    return subscription_id


async def test_subscribe_with_trial_uses_the_plans_trial_and_add_ons_as_items(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=None)
    add_on = await create_synced_add_on(session, fake_stripe)
    body = {
        "plan_id": plan.slug,
        "payment_method_id": "pm_card_visa",
        "billing_cycle": "yearly",
        "add_ons": [{"addon_id": add_on.id, "quantity": 2}],
    }

    response = await client.post(SUBSCRIBE, json=body, headers=bearer(make_token("42")))

    assert response.status_code == 200, response.text
    subscription = response.json()["subscription"]
    assert subscription["status"] == "trialing"
    assert subscription["billing_cycle"] == "yearly"
    assert subscription["trial_end"] is not None
    assert [(a["slug"], a["quantity"]) for a in subscription["add_ons"]] == [("extra-agents", 2)]
    [create] = fake_stripe.calls("POST", "/v1/subscriptions")
    assert create.params["trial_period_days"] == "14"  # TRIAL_PERIOD_DAYS
    assert create.params["items"] == [
        {"price": plan.stripe_yearly_price_id, "quantity": "1"},
        {"price": add_on.stripe_yearly_price_id, "quantity": "2"},
    ]


async def test_sca_returns_the_client_secret_again_and_the_paid_invoice_completes_it(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    sessionmaker: object,
    app: object,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_authenticationRequired"}
    token = bearer(make_token("42"))

    first = await client.post(SUBSCRIBE, json=body, headers=token)
    again = await client.post(SUBSCRIBE, json=body, headers=token)

    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["requires_action"] is True
    assert first.json()["client_secret_type"] == "payment_intent"
    assert first.json()["client_secret"]
    assert again.json()["client_secret"] == first.json()["client_secret"]
    assert first.json()["subscription"]["status"] == "incomplete"
    assert len(fake_stripe.calls("POST", "/v1/subscriptions")) == 1

    # The customer completes 3-D Secure; Stripe pays the invoice (invoice.paid follows).
    [stripe_subscription] = fake_stripe.subscriptions.values()
    fake_stripe.pay_invoice_out_of_band(stripe_subscription["latest_invoice"])
    await refresh_from_stripe(
        sessionmaker=app.state.sessionmaker,  # type: ignore[attr-defined]
        gateway=app.state.stripe_gateway,  # type: ignore[attr-defined]
        stripe_subscription_id=stripe_subscription["id"],
        now=app.state.clock.now(),  # type: ignore[attr-defined]
    )
    [subscription] = await _subscriptions(session)
    assert subscription.status == "active"


async def test_declined_card_is_402_and_a_retry_with_another_card_pays_the_same_invoice(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = bearer(make_token("42"))

    declined = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_chargeDeclinedInsufficientFunds"},
        headers=token,
    )

    assert declined.status_code == 402
    error = declined.json()["error"]
    assert error["code"] == "card_declined"
    assert error["details"]["decline_code"] == "insufficient_funds"
    [subscription] = await _subscriptions(session)
    assert subscription.status == "incomplete"

    paid = await client.post(
        SUBSCRIBE, json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"}, headers=token
    )

    assert paid.status_code == 200, paid.text
    assert paid.json()["subscription"]["status"] == "active"
    assert len(fake_stripe.calls("POST", "/v1/subscriptions")) == 1
    [pay] = [c for c in fake_stripe.requests if c.path.endswith("/pay") and c.method == "POST"]
    assert pay.params["payment_method"] == "pm_card_visa"
    [subscription] = await _subscriptions(session)
    assert subscription.status == "active"


async def test_second_subscribe_is_409(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_visa"}
    token = bearer(make_token("42"))
    assert (await client.post(SUBSCRIBE, json=body, headers=token)).status_code == 200

    second = await client.post(SUBSCRIBE, json=body, headers=token)

    assert second.status_code == 409
    assert second.json()["error"]["code"] == "subscription_exists"
    assert len(fake_stripe.calls("POST", "/v1/subscriptions")) == 1


async def test_second_subscribe_is_409_even_when_concurrent(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_visa"}
    token = bearer(make_token("42"))

    responses = await asyncio.gather(
        client.post(SUBSCRIBE, json=body, headers=token),
        client.post(SUBSCRIBE, json=body, headers=token),
    )

    assert sorted(response.status_code for response in responses) == [200, 409]
    assert len(fake_stripe.subscriptions) == 1
    assert len(await _subscriptions(session)) == 1


async def test_stripe_outage_keeps_the_reservation_and_the_retry_completes_it(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    body = {"plan_id": plan.id, "payment_method_id": "pm_card_visa"}
    token = bearer(make_token("42"))
    # Stripe answers 500 and, as it does, keeps that answer under the idempotency key.
    fake_stripe.fail_next("POST", "/v1/subscriptions", status=500, saved=True)

    failed = await client.post(SUBSCRIBE, json=body, headers=token)

    assert failed.status_code == 503
    assert failed.json()["error"]["details"] == {"retryable": True}
    [reservation] = await _subscriptions(session)
    assert reservation.status == "pending" and reservation.stripe_subscription_id is None

    retried = await client.post(SUBSCRIBE, json=body, headers=token)

    assert retried.status_code == 200, retried.text
    # The retry first looked for what the failed attempt may have made, found nothing, and
    # created with a key of its own (the old one would replay the 500).
    assert fake_stripe.calls("GET", "/v1/subscriptions")
    attempts = fake_stripe.calls("POST", "/v1/subscriptions")
    assert len(attempts) == 2 and attempts[0].idempotency_key != attempts[1].idempotency_key
    assert len(fake_stripe.subscriptions) == 1
    [subscription] = await _subscriptions(session)
    assert subscription.status == "active"


async def test_stripe_acting_then_timing_out_does_not_create_twice(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    add_on_a = await create_synced_add_on(session, fake_stripe, slug="a-extra")
    add_on_b = await create_synced_add_on(session, fake_stripe, slug="b-extra")
    token = bearer(make_token("42"))
    fake_stripe.fail_next("POST", "/v1/subscriptions", timeout=True, after_acting=True)

    def body(*add_on_ids: int) -> dict[str, object]:
        return {
            "plan_id": plan.id,
            "payment_method_id": "pm_card_visa",
            "add_ons": [{"addon_id": add_on_id} for add_on_id in add_on_ids],
        }

    failed = await client.post(SUBSCRIBE, json=body(add_on_a.id, add_on_b.id), headers=token)
    # The client retries the same order, listing the add-ons the other way round.
    retried = await client.post(SUBSCRIBE, json=body(add_on_b.id, add_on_a.id), headers=token)

    assert failed.status_code == 503
    assert retried.status_code == 200, retried.text
    assert len(fake_stripe.subscriptions) == 1
    assert len(fake_stripe.calls("POST", "/v1/subscriptions")) == 1
    assert retried.json()["subscription"]["status"] == "active"
    assert len(retried.json()["subscription"]["add_ons"]) == 2


async def test_an_abandoned_reservation_is_taken_over_by_a_different_request(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    starter = await create_synced_plan(session, fake_stripe, slug="starter", trial_days=0)
    pro = await create_synced_plan(session, fake_stripe, slug="pro", trial_days=0)
    token = bearer(make_token("42"))
    fake_stripe.fail_next("POST", "/v1/subscriptions", status=500)
    first = await client.post(
        SUBSCRIBE, json={"plan_id": starter.id, "payment_method_id": "pm_card_visa"}, headers=token
    )
    assert first.status_code == 503

    other_plan = await client.post(
        SUBSCRIBE, json={"plan_id": pro.id, "payment_method_id": "pm_card_visa"}, headers=token
    )

    assert other_plan.status_code == 200, other_plan.text
    assert other_plan.json()["subscription"]["plan"]["slug"] == "pro"
    assert len(fake_stripe.subscriptions) == 1


async def test_a_retry_after_stripe_expired_the_unpaid_subscription_starts_afresh(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = bearer(make_token("42"))
    declined = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_chargeDeclined"},
        headers=token,
    )
    assert declined.status_code == 402
    [expired] = fake_stripe.subscriptions.values()
    expired["status"] = "incomplete_expired"  # 23 hours later, unpaid

    retried = await client.post(
        SUBSCRIBE, json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"}, headers=token
    )

    assert retried.status_code == 200, retried.text
    assert retried.json()["subscription"]["status"] == "active"
    statuses = sorted(s.status for s in await _subscriptions(session))
    assert statuses == ["active", "incomplete_expired"]


async def test_bad_subscribe_requests_write_nothing(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe)
    retired = await create_plan(session, slug="retired", is_active=False)
    someone_else = fake_stripe.add_customer(email="other@acme.test")
    fake_stripe.add_payment_method("pm_someone_elses", customer=someone_else["id"])
    token = bearer(make_token("42"))

    unknown = await client.post(
        SUBSCRIBE, json={"plan_id": 999, "payment_method_id": "pm_card_visa"}, headers=token
    )
    inactive = await client.post(
        SUBSCRIBE, json={"plan_id": retired.id, "payment_method_id": "pm_card_visa"}, headers=token
    )
    wrong_cycle = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_visa", "billing_cycle": "weekly"},
        headers=token,
    )
    foreign_card = await client.post(
        SUBSCRIBE, json={"plan_id": plan.id, "payment_method_id": "pm_someone_elses"}, headers=token
    )

    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "plan_not_found")
    assert (inactive.status_code, inactive.json()["error"]["code"]) == (409, "plan_not_available")
    assert wrong_cycle.status_code == 422
    assert wrong_cycle.json()["error"]["details"][0]["field"] == "body.billing_cycle"
    assert foreign_card.status_code == 404
    assert foreign_card.json()["error"]["code"] == "payment_method_not_found"
    assert await _subscriptions(session) == []
    assert fake_stripe.calls("POST", "/v1/subscriptions") == []


async def _mirrored_cards(session: AsyncSession) -> list[str]:
    query = select(PaymentMethod.stripe_payment_method_id).execution_options(populate_existing=True)
    return list((await session.scalars(query)).all())


async def test_subscribing_with_a_card_stripe_does_not_know_is_404_and_writes_nothing(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = bearer(make_token("42"))

    unknown = await client.post(
        SUBSCRIBE, json={"plan_id": plan.id, "payment_method_id": "pm_missing"}, headers=token
    )

    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["success"] is False
    assert unknown.json()["error"]["code"] == "payment_method_not_found"
    assert await _subscriptions(session) == []
    assert await _mirrored_cards(session) == []
    assert fake_stripe.calls("POST", "/v1/subscriptions") == []
    # The slot was freed at once: the same account subscribes with a real card.
    paid = await client.post(
        SUBSCRIBE, json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"}, headers=token
    )
    assert paid.status_code == 200, paid.text


async def test_a_retry_with_a_card_stripe_does_not_know_keeps_the_unpaid_subscription(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    token = bearer(make_token("42"))
    declined = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_chargeDeclined"},
        headers=token,
    )
    assert declined.status_code == 402, declined.text

    unknown = await client.post(
        SUBSCRIBE, json={"plan_id": plan.id, "payment_method_id": "pm_missing"}, headers=token
    )

    assert unknown.status_code == 404, unknown.text
    assert unknown.json()["error"]["code"] == "payment_method_not_found"
    [subscription] = await _subscriptions(session)
    assert subscription.status == "incomplete"
    assert await _mirrored_cards(session) == ["pm_card_chargeDeclined"]
    assert [c for c in fake_stripe.requests if c.path.endswith("/pay")] == []


@pytest.mark.parametrize(
    "malformed",
    ["sub_123", "pm-123", "pm_", "pm_" + "a" * 253, "pm_12$4", "pm_a b", "pm_caf\u00e9", 42],
)
async def test_subscribing_with_a_malformed_card_id_is_422_and_stripe_is_not_called(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    malformed: object,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    calls_before = len(fake_stripe.requests)

    response = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": malformed},
        headers=bearer(make_token("42")),
    )

    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [detail["field"] for detail in error["details"]] == ["body.payment_method_id"]
    assert len(fake_stripe.requests) == calls_before
    assert await _subscriptions(session) == []
    assert await _mirrored_cards(session) == []


async def test_a_token_email_never_takes_over_a_legacy_stripe_customer_and_its_cards(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    # The old module's customer, with a card, and no metadata of ours. The attacker set
    # their dashboard email to its address.
    legacy = fake_stripe.add_customer(email="cfo@victim.test")
    fake_stripe.add_payment_method(id="pm_victims_card", customer=legacy["id"])
    attacker = bearer(make_token("66", email="cfo@victim.test"))

    subscribed = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"},
        headers=attacker,
    )
    cards = await client.get("/subscriptions/api/payment-methods/", headers=attacker)

    assert subscribed.status_code == 200, subscribed.text
    customer = await session.scalar(select(Customer).where(Customer.dashboard_user_id == "66"))
    assert customer is not None and customer.stripe_customer_id != legacy["id"]
    assert fake_stripe.customers[legacy["id"]]["metadata"] == {}
    assert "pm_victims_card" not in cards.text


async def test_a_stripe_customer_carrying_our_metadata_is_found_again(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    ours = fake_stripe.add_customer(metadata={"dashboard_user_id": "42"})

    response = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"},
        headers=bearer(make_token("42")),
    )

    assert response.status_code == 200, response.text
    assert fake_stripe.calls("POST", "/v1/customers") == []
    customer = await session.scalar(select(Customer).where(Customer.dashboard_user_id == "42"))
    assert customer is not None and customer.stripe_customer_id == ours["id"]


async def test_a_trial_with_a_card_needing_sca_returns_the_setup_intent_secret(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=7)

    response = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_authenticationRequired"},
        headers=bearer(make_token("42")),
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["subscription"]["status"] == "trialing"
    assert body["requires_action"] is True
    assert body["client_secret_type"] == "setup_intent"
    assert body["client_secret"]


async def test_concurrent_first_calls_create_one_stripe_customer(
    client: httpx.AsyncClient, make_token: TokenFactory, fake_stripe: FakeStripe
) -> None:
    headers = bearer(make_token("42"))

    responses = await asyncio.gather(
        client.post(
            "/subscriptions/api/payment-methods/",
            json={"payment_method_id": "pm_one"},
            headers=headers,
        ),
        client.post(
            "/subscriptions/api/payment-methods/",
            json={"payment_method_id": "pm_two"},
            headers=headers,
        ),
    )

    assert [response.status_code for response in responses] == [200, 200]
    assert len(fake_stripe.customers) == 1
    keys = {call.idempotency_key for call in fake_stripe.calls("POST", "/v1/customers")}
    assert len(keys) == 1
