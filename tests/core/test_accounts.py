"""Naming a customer with `customer_id` (a service token's right): what is refused."""

import httpx
import pytest

from tests.conftest import TokenFactory, bearer


@pytest.mark.parametrize(
    "path",
    ["/subscriptions/api/usage/", "/subscriptions/api/entitlements/", "/subscriptions/api/alerts/"],
)
async def test_a_customer_id_with_a_nul_character_is_422_not_a_database_error(
    client: httpx.AsyncClient, make_token: TokenFactory, path: str
) -> None:
    service = bearer(make_token("900", roles=["service"]))

    response = await client.get(path, params={"customer_id": "42\x00"}, headers=service)

    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["field"] == "query.customer_id"
