"""What the console changes goes through the domains' services, with their rules, and each
change (or refusal) is in the audit trail."""

import re

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ConsoleAuditEntry, SubscriptionPlan
from tests.conftest import TokenFactory
from tests.console.helpers import post_form, sign_in
from tests.factories import (
    create_add_on,
    create_plan,
    create_subscribed_customer,
    subscribe_through_api,
)
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import local_subscription

PLAN_FORM = "/admin/subscription-plan/action/edit-plan?pks={id}"
PLAN_SAVE = "/admin/subscription-plan/save"


@pytest.fixture
async def operator(client: httpx.AsyncClient, make_token: TokenFactory) -> httpx.AsyncClient:
    response = await sign_in(client, make_token("7", roles=["billing_admin"]))
    assert response.status_code == 302
    return client


def _plan_form(plan: SubscriptionPlan, **changes: str) -> dict[str, str]:
    values = {
        "pks": str(plan.id),
        "name": plan.name,
        "description": plan.description,
        "monthly_price": str(plan.monthly_price),
        "yearly_price": str(plan.yearly_price),
        "included_minutes": str(plan.included_minutes),
        "max_agents": str(plan.max_agents),
        "overage_rate_per_minute": str(plan.overage_rate_per_minute),
        "overage_rate_per_agent": str(plan.overage_rate_per_agent),
        "features": '{"call_recording": true}',
        "trial_days": "",
        "sort_order": str(plan.sort_order),
        "is_active": "1",
        **changes,
    }
    return values


async def _audit(session: AsyncSession) -> list[ConsoleAuditEntry]:
    rows = await session.scalars(
        select(ConsoleAuditEntry)
        .where(ConsoleAuditEntry.action != "console.sign_in")
        .order_by(ConsoleAuditEntry.id)
    )
    return list(rows)


async def test_every_console_page_renders_for_an_operator(
    operator: httpx.AsyncClient, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    plan = await create_plan(session)
    await create_add_on(session)
    await create_subscribed_customer(session, plan=plan)
    await session.commit()
    home = await operator.get("/admin/")
    lists = sorted(set(re.findall(r'href="http://testserver(/admin/[a-z-]+/list)"', home.text)))
    assert len(lists) == 11
    for page in [*lists, "/admin/drift", f"/admin/subscription-plan/details/{plan.id}"]:
        response = await operator.get(page)
        assert response.status_code == 200, page
        # Everything a console page loads is served by this service.
        assert not re.search(r'(src|href)="https?://(?!testserver)', response.text), page


async def test_a_plan_edit_is_checked_by_the_plans_rules_and_audited(
    operator: httpx.AsyncClient, session: AsyncSession
) -> None:
    plan = await create_plan(session)
    await session.commit()
    form_url = PLAN_FORM.format(id=plan.id)

    refused = await post_form(
        operator, form_url, PLAN_SAVE, _plan_form(plan, monthly_price="-5", features="{")
    )
    assert refused.status_code == 422
    assert "not JSON" in refused.text and "greater than or equal to 0" in refused.text
    saved = await post_form(
        operator, form_url, PLAN_SAVE, _plan_form(plan, monthly_price="12900", trial_days="7")
    )

    assert saved.status_code == 303
    await session.refresh(plan)
    assert (plan.monthly_price, plan.trial_days) == (12_900, 7)
    [entry] = await _audit(session)
    assert (entry.actor_user_id, entry.action, entry.target, entry.outcome) == (
        "7",
        "plan.update",
        f"plan:{plan.id}",
        "done",
    )
    assert entry.details == {"changed": {"monthly_price": [9900, 12900], "trial_days": [None, 7]}}


async def test_sync_to_stripe_creates_the_catalog_there_and_is_audited(
    operator: httpx.AsyncClient, session: AsyncSession, fake_stripe: FakeStripe
) -> None:
    plan = await create_plan(session)
    await session.commit()

    response = await post_form(
        operator,
        "/admin/subscription-plan/action/sync?pks=",
        "/admin/subscription-plan/sync",
        {"pks": ""},
    )

    assert response.status_code == 303
    await session.refresh(plan)
    assert plan.stripe_product_id == "billing_plan_growth"
    assert plan.stripe_monthly_price_id in fake_stripe.prices
    [entry] = await _audit(session)
    assert (entry.action, entry.outcome) == ("catalog.sync", "done")
    assert entry.details["actions"]["plan growth"][0] == "product created"


async def test_replaying_an_unknown_event_is_refused_and_audited(
    operator: httpx.AsyncClient, session: AsyncSession
) -> None:
    response = await post_form(
        operator,
        "/admin/stripe-event/action/replay?pks=999",
        "/admin/stripe-event/replay",
        {"pks": "999"},
    )
    assert response.status_code == 303
    [entry] = await _audit(session)
    assert (entry.action, entry.target, entry.outcome) == (
        "webhook_event.replay",
        "stripe-event:999",
        "refused",
    )


async def test_the_drift_page_shows_what_differs_from_stripe(
    operator: httpx.AsyncClient,
    session: AsyncSession,
    make_token: TokenFactory,
    fake_stripe: FakeStripe,
    client: httpx.AsyncClient,
) -> None:
    await subscribe_through_api(client, make_token, session, fake_stripe)
    clean = await post_form(operator, "/admin/drift", "/admin/drift", {})
    assert "No drift" in clean.text
    subscription = await local_subscription(session)
    subscription.status = "canceled"
    await session.commit()

    drifted = await post_form(operator, "/admin/drift", "/admin/drift", {})

    assert "1 difference(s) found" in drifted.text
    assert re.search(r"<td>status</td><td>canceled</td><td>active</td>", drifted.text)
