"""Customers holding data of every kind, made through the API where the API makes it: for the
tests that sweep or fuzz every route (tests/security, tests/fuzz)."""

import base64
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Customer
from tests.conftest import TokenFactory, bearer
from tests.factories import create_billing_row, create_synced_add_on, create_synced_plan
from tests.invoices.helpers import add_invoice_entry, growth_invoice, png_logo
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import post_event

API = "/subscriptions/api"
ADMIN_USER_ID = "7"


@dataclass(frozen=True)
class Catalog:
    plan_id: int
    plan_slug: str
    # A dearer plan to upgrade to, and a cheaper one to downgrade to.
    upgrade_plan_id: int
    downgrade_plan_id: int
    add_on_id: int


@dataclass(frozen=True)
class PopulatedAccount:
    """A customer subscribed with an add-on, two cards, usage with alerts, an invoice and a
    refund in billing history, and white-label branding."""

    user_id: str
    headers: dict[str, str]
    customer_id: int
    stripe_customer_id: str
    subscription_id: int
    payment_method_ids: tuple[str, ...]
    call_ids: tuple[str, ...]
    alert_ids: tuple[int, ...]
    invoice_record_id: int
    refund_record_id: int
    stripe_invoice_id: str


def admin_headers(make_token: TokenFactory) -> dict[str, str]:
    return bearer(make_token(ADMIN_USER_ID, roles=["billing_admin"]))


async def create_catalog(session: AsyncSession, fake_stripe: FakeStripe) -> Catalog:
    plan = await create_synced_plan(session, fake_stripe, slug="growth", trial_days=0)
    upgrade = await create_synced_plan(
        session, fake_stripe, slug="scale", monthly_price=19_900, yearly_price=199_000
    )
    downgrade = await create_synced_plan(
        session, fake_stripe, slug="starter", monthly_price=4_900, yearly_price=49_000
    )
    add_on = await create_synced_add_on(session, fake_stripe)
    return Catalog(
        plan_id=plan.id,
        plan_slug=plan.slug,
        upgrade_plan_id=upgrade.id,
        downgrade_plan_id=downgrade.id,
        add_on_id=add_on.id,
    )


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    return body


async def populate_account(
    client: httpx.AsyncClient,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    make_token: TokenFactory,
    *,
    catalog: Catalog,
    user_id: str,
) -> PopulatedAccount:
    headers = bearer(make_token(user_id, email=f"user{user_id}@example.com"))
    first_card, second_card = f"pm_card_visa_{user_id}", f"pm_card_mastercard_{user_id}"
    subscribed = await _ok(
        await client.post(
            f"{API}/subscribe/",
            json={
                "plan_id": catalog.plan_id,
                "payment_method_id": first_card,
                "add_ons": [{"addon_id": catalog.add_on_id, "quantity": 1}],
            },
            headers=headers,
        )
    )
    await _ok(
        await client.post(
            f"{API}/payment-methods/", json={"payment_method_id": second_card}, headers=headers
        )
    )
    # 3,200 minutes of the 3,000 the plan and its add-on include: alerts at 80% and 100%.
    call_ids = tuple(f"call-{user_id}-{number}" for number in range(1, 5))
    for call_id in call_ids:
        await _ok(
            await client.post(
                f"{API}/usage/",
                json={"call_id": call_id, "minutes_used": "800"},
                headers=headers,
            ),
            status=201,
        )
    await _ok(await client.post(f"{API}/usage/", json={"agents_active": 3}, headers=headers), 201)
    alerts = (await _ok(await client.get(f"{API}/alerts/", headers=headers)))["alerts"]
    assert len(alerts) >= 2, alerts

    customer = await session.scalar(
        select(Customer)
        .where(Customer.dashboard_user_id == user_id)
        .execution_options(populate_existing=True)
    )
    assert customer is not None and customer.stripe_customer_id is not None
    invoice = growth_invoice(fake_stripe, customer.stripe_customer_id, number=f"INV-{user_id}")
    invoice_row = await add_invoice_entry(session, customer, invoice)
    refund_row = await create_billing_row(
        session,
        customer,
        type="refund",
        status="refunded",
        amount=-500,
        stripe_refund_id=f"re_{user_id}",
        stripe_charge_id=f"ch_{user_id}",
    )

    logo = {"media_type": "image/png", "data": base64.b64encode(png_logo()).decode()}
    await _ok(
        await client.put(
            f"{API}/admin/customers/{user_id}/branding/",
            json={"company_name": f"Customer {user_id} Ltd", "logo": logo},
            headers=admin_headers(make_token),
        )
    )
    return PopulatedAccount(
        user_id=user_id,
        headers=headers,
        customer_id=customer.id,
        stripe_customer_id=customer.stripe_customer_id,
        subscription_id=subscribed["subscription"]["id"],
        payment_method_ids=(first_card, second_card),
        call_ids=call_ids,
        alert_ids=tuple(alert["id"] for alert in alerts),
        invoice_record_id=invoice_row.id,
        refund_record_id=refund_row.id,
        stripe_invoice_id=invoice["id"],
    )


async def store_webhook_event(client: httpx.AsyncClient, fake_stripe: FakeStripe) -> str:
    """A signed `invoice.paid` event, received and stored: its id."""
    invoice = next(iter(fake_stripe.invoices.values()))
    event = fake_stripe.event("invoice.paid", invoice)
    await _ok(await post_event(client, event))
    return str(event["id"])
