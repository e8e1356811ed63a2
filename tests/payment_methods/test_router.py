from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer, PaymentMethod
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_plan
from tests.stripe.fake import FakeStripe

CARDS = "/subscriptions/api/payment-methods/"


async def _cards(client: httpx.AsyncClient, headers: dict[str, str]) -> list[tuple[str, bool]]:
    response = await client.get(CARDS, headers=headers)
    assert response.status_code == 200, response.text
    return [(card["id"], card["is_default"]) for card in response.json()["payment_methods"]]


async def test_attach_list_make_default_and_detach(
    client: httpx.AsyncClient, make_token: TokenFactory, fake_stripe: FakeStripe
) -> None:
    headers = bearer(make_token("42"))

    first = await client.post(CARDS, json={"payment_method_id": "pm_first"}, headers=headers)
    second = await client.post(CARDS, json={"payment_method_id": "pm_second"}, headers=headers)

    assert first.status_code == second.status_code == 200, first.text
    card = first.json()["payment_method"]
    assert (card["brand"], card["last4"], card["is_default"]) == ("visa", "4242", True)
    assert "number" not in card and "fingerprint" not in card
    assert await _cards(client, headers) == [("pm_first", True), ("pm_second", False)]

    made_default = await client.post(f"{CARDS}pm_second/default/", headers=headers)
    assert made_default.status_code == 200, made_default.text
    assert await _cards(client, headers) == [("pm_second", True), ("pm_first", False)]
    [customer] = fake_stripe.customers.values()
    assert customer["invoice_settings"]["default_payment_method"] == "pm_second"

    detached = await client.delete(f"{CARDS}pm_first/", headers=headers)
    assert detached.status_code == 200 and detached.json() == {"success": True}
    assert await _cards(client, headers) == [("pm_second", True)]
    assert fake_stripe.payment_methods["pm_first"]["customer"] is None


async def test_another_customers_card_is_404(
    client: httpx.AsyncClient, make_token: TokenFactory, fake_stripe: FakeStripe
) -> None:
    other = fake_stripe.add_customer(email="other@acme.test")
    fake_stripe.add_payment_method("pm_theirs", customer=other["id"])
    headers = bearer(make_token("42"))

    attach = await client.post(CARDS, json={"payment_method_id": "pm_theirs"}, headers=headers)
    default = await client.post(f"{CARDS}pm_theirs/default/", headers=headers)
    detach = await client.delete(f"{CARDS}pm_theirs/", headers=headers)

    assert [attach.status_code, default.status_code, detach.status_code] == [404, 404, 404]
    assert fake_stripe.payment_methods["pm_theirs"]["customer"] == other["id"]


async def test_the_only_card_of_a_live_subscription_cannot_be_detached(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, trial_days=0)
    headers = bearer(make_token("42"))
    subscribed = await client.post(
        "/subscriptions/api/subscribe/",
        json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"},
        headers=headers,
    )
    assert subscribed.status_code == 200, subscribed.text

    response = await client.delete(f"{CARDS}pm_card_visa/", headers=headers)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_payment_method"
    assert await _cards(client, headers) == [("pm_card_visa", True)]


async def test_setup_intent_gives_stripe_js_a_client_secret(
    client: httpx.AsyncClient, make_token: TokenFactory, fake_stripe: FakeStripe
) -> None:
    response = await client.post(f"{CARDS}setup-intent/", headers=bearer(make_token("42")))

    assert response.status_code == 200, response.text
    assert "_secret_" in response.json()["client_secret"]
    [create] = fake_stripe.calls("POST", "/v1/setup_intents")
    assert create.params["usage"] == "off_session"
    assert create.params["allowed_payment_method_types"] == ["card"]
    assert create.idempotency_key is not None


async def test_unknown_card_is_404(
    client: httpx.AsyncClient, make_token: TokenFactory, fake_stripe: FakeStripe
) -> None:
    headers = bearer(make_token("42"))
    missing = await client.post(CARDS, json={"payment_method_id": "pm_missing"}, headers=headers)
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "payment_method_not_found"


async def test_switching_the_default_back_and_forth_reaches_stripe_each_time(
    client: httpx.AsyncClient, make_token: TokenFactory, fake_stripe: FakeStripe
) -> None:
    headers = bearer(make_token("42"))
    for card in ("pm_a", "pm_b"):
        await client.post(CARDS, json={"payment_method_id": card}, headers=headers)

    for card in ("pm_b", "pm_a", "pm_b"):
        response = await client.post(f"{CARDS}{card}/default/", headers=headers)
        assert response.status_code == 200, response.text

    [customer] = fake_stripe.customers.values()
    assert customer["invoice_settings"]["default_payment_method"] == "pm_b"
    assert await _cards(client, headers) == [("pm_b", True), ("pm_a", False)]


# The fake's id for a card Stripe does not know (any other `pm_...` is a visa made up on use).
UNKNOWN_CARD = "pm_missing"
MALFORMED_CARD_IDS = [
    "cus_123",  # another kind of Stripe object
    "card-1234",
    "pm_",
    "pm_" + "a" * 253,
    "pm_12$4",
    "pm_a b",
    "pm_caf\u00e9",
]


async def _mirrored_cards(session: AsyncSession) -> list[str]:
    query = select(PaymentMethod.stripe_payment_method_id).execution_options(populate_existing=True)
    return list((await session.scalars(query)).all())


async def test_a_card_stripe_does_not_know_is_404_on_every_route_and_changes_nothing(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    headers = bearer(make_token("42"))
    kept = await client.post(CARDS, json={"payment_method_id": "pm_kept"}, headers=headers)
    assert kept.status_code == 200, kept.text

    responses = {
        "attach": await client.post(
            CARDS, json={"payment_method_id": UNKNOWN_CARD, "set_default": True}, headers=headers
        ),
        "default": await client.post(f"{CARDS}{UNKNOWN_CARD}/default/", headers=headers),
        "detach": await client.delete(f"{CARDS}{UNKNOWN_CARD}/", headers=headers),
    }

    for route, response in responses.items():
        assert response.status_code == 404, (route, response.text)
        body = response.json()
        assert body["success"] is False, route
        assert body["error"]["code"] == "payment_method_not_found", route
        assert set(body["error"]) == {"code", "message", "details"}, route
    assert await _mirrored_cards(session) == ["pm_kept"]
    assert await _cards(client, headers) == [("pm_kept", True)]
    [customer] = fake_stripe.customers.values()
    assert customer["invoice_settings"]["default_payment_method"] == "pm_kept"


@pytest.mark.parametrize("malformed", MALFORMED_CARD_IDS)
async def test_a_malformed_card_id_is_422_and_stripe_is_not_called(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    malformed: str,
) -> None:
    headers = bearer(make_token("42"))
    in_path = quote(malformed, safe="")

    responses = {
        "body.payment_method_id": await client.post(
            CARDS, json={"payment_method_id": malformed}, headers=headers
        ),
        "path.payment_method_id": await client.post(f"{CARDS}{in_path}/default/", headers=headers),
    }
    detach = await client.delete(f"{CARDS}{in_path}/", headers=headers)

    for field, response in [*responses.items(), ("path.payment_method_id", detach)]:
        assert response.status_code == 422, (field, response.text)
        error = response.json()["error"]
        assert error["code"] == "validation_error"
        assert [detail["field"] for detail in error["details"]] == [field]
    assert fake_stripe.requests == []
    assert await _mirrored_cards(session) == []


async def test_removing_a_card_stripe_no_longer_holds_for_the_customer_forgets_it(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    headers = bearer(make_token("42"))
    for card in ("pm_kept", "pm_detached_elsewhere"):
        attached = await client.post(CARDS, json={"payment_method_id": card}, headers=headers)
        assert attached.status_code == 200, attached.text
    # Detached in Stripe's dashboard before any webhook said so; and a card still mirrored
    # here that Stripe does not know at all.
    fake_stripe.payment_methods["pm_detached_elsewhere"]["customer"] = None
    customer = await session.scalar(select(Customer))
    assert customer is not None
    session.add(PaymentMethod(customer_id=customer.id, stripe_payment_method_id="pm_missing_1"))
    await session.commit()

    detached = await client.delete(f"{CARDS}pm_detached_elsewhere/", headers=headers)
    unknown = await client.delete(f"{CARDS}pm_missing_1/", headers=headers)

    assert detached.status_code == unknown.status_code == 200, (detached.text, unknown.text)
    assert await _mirrored_cards(session) == ["pm_kept"]
    assert await _cards(client, headers) == [("pm_kept", True)]
    assert fake_stripe.calls("POST", "/v1/payment_methods/pm_detached_elsewhere/detach") == []
