"""POST and DELETE admin/customers/{id}/suspension/: an operator suspends a customer's calls."""

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import TokenFactory, bearer
from tests.factories import (
    create_customer,
    create_plan,
    create_subscribed_customer,
    create_subscription,
)
from tests.usage.helpers import decision, get_entitlements

SUSPENSION = "/subscriptions/api/admin/customers/{}/suspension/"


@pytest.fixture
def user(make_token: TokenFactory) -> str:
    return make_token("42")


@pytest.fixture
def admin(make_token: TokenFactory) -> dict[str, str]:
    return bearer(make_token("9004", roles=["billing_admin"]))


async def test_an_operator_suspension_blocks_calls_until_it_is_lifted(
    client: httpx.AsyncClient, session: AsyncSession, user: str, admin: dict[str, str]
) -> None:
    await create_subscribed_customer(session, dashboard_user_id="42", status="active")

    suspended = await client.post(
        SUSPENSION.format("42"), json={"reason": "fraud review"}, headers=admin
    )
    again = await client.post(
        SUSPENSION.format("42"), json={"reason": "fraud review, day 2"}, headers=admin
    )
    while_suspended = await get_entitlements(client, user)
    manage = await client.get("/subscriptions/api/manage/", headers=bearer(user))
    lifted = await client.delete(SUSPENSION.format("42"), headers=admin)
    after = await get_entitlements(client, user)

    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["suspended"] is True
    # Suspending twice keeps the first time and takes the newer reason.
    assert again.json()["suspended_at"] == suspended.json()["suspended_at"]
    assert again.json()["reason"] == "fraud review, day 2"
    assert decision(while_suspended) == (False, True, "suspended")
    assert while_suspended["status"] == "active"
    assert manage.json()["subscription"]["suspended_at"] == suspended.json()["suspended_at"]
    assert (lifted.status_code, lifted.json()["suspended"]) == (200, False)
    assert decision(after) == (True, False, None)


async def test_only_a_billing_admin_suspends_and_only_a_known_subscription(
    client: httpx.AsyncClient, session: AsyncSession, user: str, admin: dict[str, str]
) -> None:
    await create_subscribed_customer(session, dashboard_user_id="42", status="active")

    by_user = await client.post(SUSPENSION.format("42"), json={"reason": "x"}, headers=bearer(user))
    unknown = await client.post(SUSPENSION.format("nobody"), json={"reason": "x"}, headers=admin)
    no_reason = await client.post(SUSPENSION.format("42"), json={"reason": "  "}, headers=admin)

    assert by_user.status_code == 403
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "customer_not_found")
    assert no_reason.status_code == 422
    assert decision(await get_entitlements(client, user)) == (True, False, None)


async def test_a_suspension_belongs_to_the_account_and_outlives_a_new_subscription(
    client: httpx.AsyncClient, session: AsyncSession, user: str, admin: dict[str, str]
) -> None:
    customer = await create_customer(session, dashboard_user_id="42")
    plan = await create_plan(session)
    old = await create_subscription(session, customer=customer, plan=plan, status="active")
    assert (
        await client.post(SUSPENSION.format("42"), json={"reason": "chargebacks"}, headers=admin)
    ).status_code == 200
    # The customer cancels and subscribes again.
    old.status = "canceled"
    await session.commit()
    await create_subscription(session, customer=customer, plan=plan, status="active")

    assert decision(await get_entitlements(client, user)) == (False, True, "suspended")


async def test_a_nul_in_a_customer_path_is_422_not_a_database_error(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    suspended = await client.post(SUSPENSION.format("a%00b"), json={"reason": "x"}, headers=admin)
    branding = await client.get("/subscriptions/api/admin/customers/a%00b/branding/", headers=admin)

    assert (suspended.status_code, branding.status_code) == (422, 422)
