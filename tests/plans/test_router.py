import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AddOn, SubscriptionPlan
from tests.conftest import TokenFactory, bearer
from tests.factories import create_add_on, create_plan

PLANS = "/subscriptions/api/plans/"
ADMIN_PLANS = "/subscriptions/api/admin/plans/"
ADMIN_ADD_ONS = "/subscriptions/api/admin/add-ons/"

NEW_PLAN = {
    "slug": "team",
    "name": "Team",
    "monthly_price": 7_900,
    "yearly_price": 79_000,
    "included_minutes": 3_000,
    "max_agents": 15,
    "overage_rate_per_minute": "2.25",
    "overage_rate_per_agent": "1250",
    "features": {"ivr": True},
}


async def _count(session: AsyncSession, model: type[SubscriptionPlan] | type[AddOn]) -> int:
    return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_plans_list_is_public_and_reads_as_the_dashboard_expects(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await create_plan(session, slug="pro", sort_order=2, trial_days=None)
    await create_plan(session, slug="basic", sort_order=1, trial_days=7)
    await create_plan(session, slug="legacy", is_active=False)
    await create_add_on(session, slug="extra-minutes")

    response = await client.get(PLANS)

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert [plan["slug"] for plan in body["plans"]] == ["basic", "pro"]
    basic, pro = body["plans"]
    assert basic["monthly_price"] == 9_900 and basic["currency"] == "usd"
    assert basic["overage_rate_per_minute"] == "2.5"
    assert basic["trial_days"] == 7
    assert pro["trial_days"] == 14  # TRIAL_PERIOD_DAYS when the plan sets none
    assert "stripe_monthly_price_id" not in basic
    assert [add_on["slug"] for add_on in body["add_ons"]] == ["extra-minutes"]


async def test_plans_list_answers_without_trailing_slash_and_never_redirects(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    await create_plan(session)

    response = await client.get(PLANS.rstrip("/"), follow_redirects=False)

    assert response.status_code == 200
    assert len(response.json()["plans"]) == 1


async def test_unknown_or_inactive_plan_is_404(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    legacy = await create_plan(session, slug="legacy", is_active=False)

    for plan_id in (999, legacy.id):
        response = await client.get(f"{PLANS}{plan_id}/")
        assert response.status_code == 404
        assert response.json() == {
            "success": False,
            "error": {"code": "plan_not_found", "message": "No such plan.", "details": None},
        }


async def test_admin_creates_a_plan_that_the_public_list_then_shows(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))

    created = await client.post(ADMIN_PLANS, json=NEW_PLAN, headers=admin)

    assert created.status_code == 201, created.text
    plan = created.json()["plan"]
    assert plan["currency"] == "usd"
    assert plan["overage_rate_per_minute"] == "2.25"
    assert plan["trial_days"] == 14 and plan["trial_days_override"] is None
    listed = (await client.get(PLANS)).json()["plans"]
    assert [entry["slug"] for entry in listed] == ["team"]


async def test_duplicate_plan_slug_is_409_and_writes_nothing(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    await create_plan(session, slug="team", name="Old team")
    admin = bearer(make_token(roles=["billing_admin"]))

    response = await client.post(ADMIN_PLANS, json=NEW_PLAN, headers=admin)

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "plan_exists"
    assert await _count(session, SubscriptionPlan) == 1


async def test_plan_in_another_currency_is_refused(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))

    response = await client.post(ADMIN_PLANS, json={**NEW_PLAN, "currency": "EUR"}, headers=admin)

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "currency_not_supported"
    assert await _count(session, SubscriptionPlan) == 0


async def test_admin_routes_need_the_billing_admin_role(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    plan = await create_plan(session)
    customer = bearer(make_token(roles=[]))

    attempts = [
        await client.get(ADMIN_PLANS, headers=customer),
        await client.post(ADMIN_PLANS, json=NEW_PLAN, headers=customer),
        await client.patch(f"{ADMIN_PLANS}{plan.id}/", json={"name": "X"}, headers=customer),
        await client.post(f"{ADMIN_PLANS}{plan.id}/deactivate/", headers=customer),
        await client.post(ADMIN_ADD_ONS, json={}, headers=customer),
    ]

    assert [response.status_code for response in attempts] == [403] * 5
    assert {response.json()["error"]["code"] for response in attempts} == {"forbidden"}
    assert (await client.post(ADMIN_PLANS, json=NEW_PLAN)).status_code == 401
    await session.refresh(plan)
    assert plan.name == "Growth" and plan.is_active
    assert await _count(session, SubscriptionPlan) == 1


async def test_wrong_types_are_422_with_field_paths(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))
    bad = {
        **NEW_PLAN,
        "monthly_price": "49.00",
        "max_agents": 0,
        "overage_rate_per_minute": "NaN",
        "features": {"ivr": "yes"},
    }

    response = await client.post(ADMIN_PLANS, json=bad, headers=admin)

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    fields = {detail["field"] for detail in error["details"]}
    assert {
        "body.monthly_price",
        "body.max_agents",
        "body.overage_rate_per_minute",
        "body.features.ivr",
    } <= fields
    assert await _count(session, SubscriptionPlan) == 0


async def test_malformed_json_is_422(client: httpx.AsyncClient, make_token: TokenFactory) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))

    response = await client.post(
        ADMIN_PLANS,
        content=b'{"slug": "team",',
        headers={**admin, "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "malformed_json"


async def test_admin_updates_and_deactivates_a_plan(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    plan = await create_plan(session, trial_days=7)
    admin = bearer(make_token(roles=["billing_admin"]))

    updated = await client.patch(
        f"{ADMIN_PLANS}{plan.id}/",
        json={"monthly_price": 10_900, "trial_days": None},
        headers=admin,
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["plan"]["monthly_price"] == 10_900
    assert updated.json()["plan"]["trial_days_override"] is None

    deactivated = await client.post(f"{ADMIN_PLANS}{plan.id}/deactivate", headers=admin)
    assert deactivated.status_code == 200
    assert deactivated.json()["plan"]["is_active"] is False
    assert (await client.get(PLANS)).json()["plans"] == []
    admin_list = (await client.get(ADMIN_PLANS, headers=admin)).json()["plans"]
    assert [entry["is_active"] for entry in admin_list] == [False]


async def test_update_refuses_null_for_required_fields(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    plan = await create_plan(session)
    admin = bearer(make_token(roles=["billing_admin"]))

    response = await client.patch(f"{ADMIN_PLANS}{plan.id}/", json={"name": None}, headers=admin)

    assert response.status_code == 422
    await session.refresh(plan)
    assert plan.name == "Growth"


async def test_update_of_unknown_plan_is_404(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))

    response = await client.patch(f"{ADMIN_PLANS}4242/", json={"name": "X"}, headers=admin)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "plan_not_found"


async def test_renaming_a_plan_onto_another_name_is_409(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    await create_plan(session, slug="one", name="One")
    two = await create_plan(session, slug="two", name="Two")
    admin = bearer(make_token(roles=["billing_admin"]))

    response = await client.patch(f"{ADMIN_PLANS}{two.id}/", json={"name": "One"}, headers=admin)

    assert response.status_code == 409
    await session.refresh(two)
    assert two.name == "Two"


async def test_admin_manages_add_ons(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))
    add_on = {
        "slug": "extra-agents",
        "name": "Extra agents",
        "monthly_price": 5_000,
        "yearly_price": 50_000,
        "extra_agents": 5,
        "max_quantity": 10,
    }

    created = await client.post(ADMIN_ADD_ONS, json=add_on, headers=admin)
    assert created.status_code == 201, created.text
    add_on_id = created.json()["add_on"]["id"]
    assert (await client.post(ADMIN_ADD_ONS, json=add_on, headers=admin)).status_code == 409

    updated = await client.patch(
        f"{ADMIN_ADD_ONS}{add_on_id}/", json={"extra_agents": 6}, headers=admin
    )
    assert updated.json()["add_on"]["extra_agents"] == 6
    assert [a["slug"] for a in (await client.get(PLANS)).json()["add_ons"]] == ["extra-agents"]

    await client.post(f"{ADMIN_ADD_ONS}{add_on_id}/deactivate/", headers=admin)
    assert (await client.get(PLANS)).json()["add_ons"] == []
    assert (await client.patch(f"{ADMIN_ADD_ONS}999/", json={}, headers=admin)).status_code == 404
    assert await _count(session, AddOn) == 1


async def test_text_with_nul_characters_is_422_not_a_crash(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))
    plan = await create_plan(session)

    created = await client.post(ADMIN_PLANS, json={**NEW_PLAN, "name": "a\u0000b"}, headers=admin)
    flags = await client.patch(
        f"{ADMIN_PLANS}{plan.id}/", json={"features": {"x\u0000": True}}, headers=admin
    )

    assert created.status_code == flags.status_code == 422
    assert created.json()["error"]["details"][0]["field"] == "body.name"
    assert await _count(session, SubscriptionPlan) == 1


async def test_patch_null_names_the_field_and_extreme_rates_are_stored_exactly(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))
    plan = await create_plan(session)

    null_name = await client.patch(f"{ADMIN_PLANS}{plan.id}/", json={"name": None}, headers=admin)
    tiny_zero = await client.patch(
        f"{ADMIN_PLANS}{plan.id}/", json={"overage_rate_per_agent": "0E-1000000"}, headers=admin
    )
    huge = await client.patch(
        f"{ADMIN_PLANS}{plan.id}/", json={"overage_rate_per_agent": "1E+1000000"}, headers=admin
    )

    assert null_name.json()["error"]["details"][0]["field"] == "body.name"
    assert tiny_zero.status_code == 200
    assert tiny_zero.json()["plan"]["overage_rate_per_agent"] == "0"
    assert huge.status_code == 422


async def test_deeply_nested_json_is_malformed_not_a_400(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))

    response = await client.post(
        ADMIN_PLANS,
        content=b"[" * 5000,
        headers={**admin, "Content-Type": "application/json"},
    )

    assert response.status_code == 422
    assert response.json()["error"]["code"] == "malformed_json"
