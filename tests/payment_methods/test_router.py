import httpx
from sqlalchemy.ext.asyncio import AsyncSession

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
