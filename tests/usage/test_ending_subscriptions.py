"""Overage of a subscription that ends: nothing left waiting for an invoice that will never
come, and no credit left as balance a churned customer never uses (issue: usage terms that
follow the account's history)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.core.periods import add_months
from app.models import (
    BillingHistory,
    OperatorAlert,
    OverageCharge,
    Subscription,
    UsagePeriodTotals,
    UsageRecord,
)
from app.usage.tasks import bill_ended_subscription_usage, bill_overage_adjustments
from app.webhooks.tasks import process_stripe_event
from tests.conftest import TokenFactory, bearer
from tests.factories import subscribe_through_api
from tests.running_jobs import app_job_ctx, run_queued_jobs
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import deliver, local_subscription

MANAGE = "/subscriptions/api/manage/"


async def _usage(session: AsyncSession, subscription: Subscription, minutes: str) -> None:
    assert subscription.billing_cycle_anchor is not None
    session.add(
        UsagePeriodTotals(
            subscription_id=subscription.id,
            period_start=subscription.billing_cycle_anchor,
            period_end=add_months(subscription.billing_cycle_anchor, 1),
            minutes_used=Decimal(minutes),
            peak_agents=0,
            record_count=1,
        )
    )
    await session.commit()


async def _charges(session: AsyncSession) -> list[OverageCharge]:
    query = select(OverageCharge).order_by(OverageCharge.id)
    return list((await session.scalars(query.execution_options(populate_existing=True))).all())


async def _overage_rows(session: AsyncSession) -> list[BillingHistory]:
    query = select(BillingHistory).where(BillingHistory.type == "overage")
    return list((await session.scalars(query.execution_options(populate_existing=True))).all())


def _renew(fake_stripe: FakeStripe, clock: FrozenClock, stripe_subscription: Any) -> Any:
    fake_stripe.now = min(i["current_period_end"] for i in stripe_subscription["items"]["data"])
    clock.set(datetime.fromtimestamp(fake_stripe.now, UTC))
    return fake_stripe.renew_subscription(stripe_subscription["id"])


async def test_an_immediate_cancel_bills_the_overage_still_pending_on_a_final_invoice(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, "2100")
    # The renewal was finalized before its overage got on it: the items wait, pending, for
    # the subscription's next invoice.
    draft = _renew(fake_stripe, clock, stripe_subscription)
    created = fake_stripe.event("invoice.created", draft)
    fake_stripe.finalize_invoice(draft["id"])
    assert await deliver(client, app, created, timestamp=fake_stripe.now) == "processed"
    [charge] = await _charges(session)
    assert charge.status == "pending_next_invoice"

    # Three days later the customer cancels now: that next invoice will never come.
    fake_stripe.now += 3 * 86_400
    clock.advance(timedelta(days=3))
    response = await client.post(
        MANAGE,
        json={"action": "cancel", "at_period_end": False},
        headers=bearer(make_token("42")),
    )
    assert response.status_code == 200, response.text
    # (The renewal's event, queued when it was posted, was processed above: skipped here.)
    ran = await run_queued_jobs(app, bill_ended_subscription_usage, process_stripe_event)
    assert ran[-1] == "bill_ended_subscription_usage"

    [charge] = await _charges(session)
    assert charge.status == "invoiced"
    final = fake_stripe.invoices[charge.stripe_invoice_id or ""]
    # Stripe's invoice of the subscription's pending items, finalized so the card is charged.
    [create] = fake_stripe.calls("POST", "/v1/invoices")
    assert create.params["subscription"] == stripe_subscription["id"]
    assert create.params["pending_invoice_items_behavior"] == "include"
    assert (final["status"], final["total"]) == ("open", 250)
    [item] = fake_stripe.invoice_items.values()
    assert item["invoice"] == final["id"]
    # The customer sees the charge once, on that invoice.
    [row] = await _overage_rows(session)
    assert (row.amount, row.status, row.stripe_invoice_id) == (250, "open", final["id"])
    billed_rows = (
        await session.scalars(
            select(BillingHistory).where(BillingHistory.stripe_invoice_id == final["id"])
        )
    ).all()
    assert len(billed_rows) == 1

    # The webhook of the deletion, and the job run again, bill nothing twice.
    deleted = fake_stripe.event("customer.subscription.deleted", stripe_subscription)
    assert await deliver(client, app, deleted, timestamp=fake_stripe.now) == "processed"
    finalized = fake_stripe.event("invoice.finalized", final)
    assert await deliver(client, app, finalized, timestamp=fake_stripe.now) == "processed"
    assert len(fake_stripe.calls("POST", "/v1/invoices")) == 1
    assert len(await _overage_rows(session)) == 1
    assert (
        len(
            (
                await session.scalars(
                    select(BillingHistory).where(BillingHistory.stripe_invoice_id == final["id"])
                )
            ).all()
        )
        == 1
    )


async def test_a_credit_for_an_ended_subscription_is_left_for_an_operator_to_refund(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    subscription = await local_subscription(session)
    await _usage(session, subscription, "2100")
    draft = _renew(fake_stripe, clock, stripe_subscription)
    created = fake_stripe.event("invoice.created", draft)
    assert await deliver(client, app, created, timestamp=fake_stripe.now) == "processed"
    [charge] = await _charges(session)
    assert (charge.amount, charge.status) == (250, "invoiced")
    # Canceled at once two days later; then the telephony backend's copy of a call the
    # dashboard had reported replaces it with 40 minutes fewer.
    fake_stripe.now += 2 * 86_400
    clock.advance(timedelta(days=2))
    stripe_subscription.update(
        status="canceled", canceled_at=fake_stripe.now, ended_at=fake_stripe.now
    )
    deleted = fake_stripe.event("customer.subscription.deleted", stripe_subscription)
    assert await deliver(client, app, deleted, timestamp=fake_stripe.now) == "processed"
    totals = await session.scalar(select(UsagePeriodTotals))
    assert totals is not None
    session.add(
        UsageRecord(
            customer_id=subscription.customer_id,
            subscription_id=subscription.id,
            kind="minutes",
            call_id="replaced-call",
            minutes=Decimal(5),
            occurred_at=totals.period_start + timedelta(days=3),
            period_start=totals.period_start,
            source="service",
            request_fingerprint="f" * 64,
            replaced_payload='{"minutes": "45"}',
            created_at=totals.period_start + timedelta(days=3),
        )
    )
    totals.minutes_used -= Decimal(40)
    await session.commit()
    requests_before = len(fake_stripe.requests)

    assert await bill_overage_adjustments(app_job_ctx(app)) == 1

    # 60 min x 2.5 = 150 owed, 250 charged: 100 to give back. A credit on Stripe would be
    # customer balance the churned customer never uses, so nothing goes to Stripe: the
    # charge waits for a refund and an operator is told, once.
    [_, credit] = await _charges(session)
    assert (credit.sequence, credit.amount, credit.status) == (1, -100, "refund_due")
    assert not [
        request for request in fake_stripe.requests[requests_before:] if request.method == "POST"
    ]
    assert await bill_overage_adjustments(app_job_ctx(app)) == 0
    alerts = (await session.scalars(select(OperatorAlert))).all()
    assert [(alert.kind, alert.details["amount"]) for alert in alerts] == [
        ("overage_credit_to_refund", -100)
    ]
    assert alerts[0].details["charged_on_invoice"] == draft["id"]
