"""An overage charge whose lines ended up on two invoices (the renewal draft was finalized
between its two items): billing history shows what is on which invoice (issue: usage terms
that follow the account's history)."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.core.periods import add_months
from app.models import BillingHistory, OverageCharge, UsagePeriodTotals
from app.usage.tasks import bill_overage_charge
from tests.conftest import TokenFactory, bearer
from tests.factories import subscribe_through_api
from tests.running_jobs import app_job_ctx
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import deliver, local_subscription


async def _rows(session: AsyncSession) -> list[tuple[int, str | None, str]]:
    query = (
        select(BillingHistory)
        .where(BillingHistory.type == "overage")
        .order_by(BillingHistory.amount)
        .execution_options(populate_existing=True)
    )
    return [(row.amount, row.stripe_invoice_id, row.status) for row in await session.scalars(query)]


def _renew(fake_stripe: FakeStripe, clock: FrozenClock, stripe_subscription: Any) -> Any:
    fake_stripe.now = min(i["current_period_end"] for i in stripe_subscription["items"]["data"])
    clock.set(datetime.fromtimestamp(fake_stripe.now, UTC))
    return fake_stripe.renew_subscription(stripe_subscription["id"])


async def test_a_charge_split_across_two_invoices_shows_each_part_on_its_invoice(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    assert subscription.billing_cycle_anchor is not None
    session.add(
        UsagePeriodTotals(
            subscription_id=subscription.id,
            period_start=subscription.billing_cycle_anchor,
            period_end=add_months(subscription.billing_cycle_anchor, 1),
            minutes_used=Decimal("2120.5"),
            peak_agents=12,
            record_count=1,
        )
    )
    await session.commit()
    draft = _renew(fake_stripe, clock, stripe_subscription)
    # Stripe finalizes the draft right after the minutes item got on it, before the agents.
    create_item = next(
        route for route in fake_stripe.routes if route.pattern.pattern == "/v1/invoiceitems"
    )

    def create_then_finalize(params: Any) -> Any:
        item = create_item.handler(params)
        if fake_stripe.invoices[draft["id"]]["status"] == "draft":
            fake_stripe.finalize_invoice(draft["id"])
        return item

    fake_stripe.add_route("POST", "/v1/invoiceitems", create_item.params_type, create_then_finalize)

    created = fake_stripe.event("invoice.created", draft)
    assert await deliver(client, app, created, timestamp=fake_stripe.now) == "processed"
    [charge] = (await session.scalars(select(OverageCharge))).all()
    # The sweeper's retry: the agents wait, pending, for the next invoice.
    await bill_overage_charge(app_job_ctx(app), charge.id)

    # 120.5 min x 2.5 = 301 on the renewal; 2 agents x 1,500 = 3,000 waiting.
    assert await _rows(session) == [(301, draft["id"], "open"), (3_000, None, "pending")]

    # The next renewal takes the agents: each part follows its own invoice.
    next_draft = _renew(fake_stripe, clock, stripe_subscription)
    event = fake_stripe.event("invoice.created", next_draft)
    assert await deliver(client, app, event, timestamp=fake_stripe.now) == "processed"
    paid = fake_stripe.pay_invoice_out_of_band(draft["id"])
    event = fake_stripe.event("invoice.paid", paid)
    assert await deliver(client, app, event, timestamp=fake_stripe.now) == "processed"
    assert await _rows(session) == [(301, draft["id"], "paid"), (3_000, next_draft["id"], "draft")]
    listed = await client.get(
        "/subscriptions/api/billing-history/", headers=bearer(make_token("42"))
    )
    assert listed.status_code == 200, listed.text
    overage = [entry for entry in listed.json()["billing_history"] if entry["type"] == "overage"]
    assert sorted(entry["amount"] for entry in overage) == [301, 3_000]
