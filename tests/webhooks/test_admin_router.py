import httpx
import pytest

from tests.conftest import TokenFactory, bearer
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import post_event

EVENTS = "/subscriptions/api/admin/webhook-events/"


@pytest.mark.parametrize("event_type", ["invoice.paid\x00", "invoice paid", "Invoice.Paid"])
async def test_a_type_filter_that_is_no_event_type_is_422(
    client: httpx.AsyncClient, make_token: TokenFactory, event_type: str
) -> None:
    admin = bearer(make_token("7", roles=["billing_admin"]))

    response = await client.get(EVENTS, params={"type": event_type}, headers=admin)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "query.type"


async def test_the_type_filter_lists_the_events_of_that_type(
    client: httpx.AsyncClient, make_token: TokenFactory, fake_stripe: FakeStripe
) -> None:
    customer = fake_stripe.add_customer(email="user42@example.com")
    deleted = fake_stripe.event("customer.deleted", customer)
    updated = fake_stripe.event("customer.updated", customer)
    for event in (deleted, updated):
        assert (await post_event(client, event)).status_code == 200
    admin = bearer(make_token("7", roles=["billing_admin"]))

    response = await client.get(EVENTS, params={"type": "customer.deleted"}, headers=admin)

    assert response.status_code == 200, response.text
    assert [e["stripe_event_id"] for e in response.json()["webhook_events"]] == [deleted["id"]]
