"""One call center through its first five months, on the injected clock and the stateful Stripe
fake: every invoice's lines compared with amounts computed by hand (the table below), each
charge once in billing history, and `billing reconcile` finding no drift at the end.

Covered: a trial ending on the 31st (a month-end anchor), the first paid month, records at
23:59:59 and 00:00:00 on the anchor day, a late record after its period was billed, an
upgrade mid-period, a failed renewal payment that recovers on the second retry, an add-on
bought and removed mid-period, a downgrade at the period end, and an immediate cancel with
overage pending (a late record's adjustment waiting for a next invoice). The switch to yearly
and back to monthly at the end of the yearly term is the year in test_simulated_year.py.

Stripe's proration here is the fake's: a change made now is invoiced as the whole price
difference, not prorated by time (the service passes Stripe's amounts through unchanged).
"""

from decimal import Decimal

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.models import BillingHistory
from app.stripe_sync.reconcile import reconcile_with_stripe
from app.usage.tasks import bill_ended_subscription_usage, bill_overage_adjustments
from app.webhooks.tasks import process_stripe_event
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_add_on, create_synced_plan
from tests.running_jobs import app_job_ctx, run_queued_jobs
from tests.scenarios.call_center import (
    CallCenter,
    overage_charges,
    overage_lines,
    utc,
)
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import local_subscription

# (period, line, quantity, rate in cents, amount in cents), by hand:
# Growth: 2,000 min and 10 agents included, 2.5 c/min, 1,500 c/agent; $99.00 a month.
# Pro: 5,000 min included, 2 c/min; $149.00 a month. Add-on: 1,000 extra min, $20.00 a month.
EXPECTED_OVERAGE = [
    # Trial (01-17 to 01-31): 1,500 minutes, never billed.
    ("2027-01-31", "minutes", Decimal("100.5"), Decimal("2.5"), 251),  # 2,100.5 - 2,000; 251.25
    ("2027-01-31", "agents", 2, Decimal(1500), 3_000),  # peak 12 of 10
    ("2027-01-31", "minutes (late)", Decimal(10), Decimal("2.5"), 25),  # 110.5 x 2.5 = 276 - 251
    # Upgraded on 03-10: Pro prices the whole period. 5,600 - 5,000 = 600 x 2 = 1,200.
    ("2027-02-28", "minutes", Decimal(600), Decimal(2), 1_200),
    # Add-on held 04-10 to 04-20: 10 of 30 days, 1,000 x 10/30 = 333 extra minutes;
    # 5,500 - 5,333 = 167 x 2 = 334.
    ("2027-03-31", "minutes", Decimal(167), Decimal(2), 334),
    # April on Pro (the downgrade at its end does not price it): 5,100 - 5,000 = 100 x 2.
    ("2027-04-30", "minutes", Decimal(100), Decimal(2), 200),
    ("2027-04-30", "minutes (late)", Decimal(20), Decimal(2), 40),  # 120 x 2 = 240 - 200
    # Canceled now on 06-10: the last period (05-31 to 06-10), cut short, keeps Growth's
    # full allowance: 2,300 - 2,000 = 300 x 2.5 = 750.
    ("2027-05-31", "minutes", Decimal(300), Decimal("2.5"), 750),
]
EXPECTED_INVOICES = [
    # (billing reason, total in cents)
    ("subscription_create", 0),  # the trial's $0 invoice
    ("subscription_cycle", 9_900),  # 01-31: the first paid month, nothing over in the trial
    ("subscription_cycle", 9_900 + 251 + 3_000),  # 02-28: Growth and January's overage
    ("subscription_update", 14_900 - 9_900),  # 03-10: the upgrade (the fake prorates whole)
    # 03-31: Pro, the late minutes, February's; declined, paid on the second retry (04-02).
    ("subscription_cycle", 14_900 + 25 + 1_200),
    ("subscription_update", 2_000),  # 04-10: the add-on
    ("subscription_cycle", 14_900 + 334),  # 04-30: Pro and March's overage
    ("subscription_cycle", 9_900 + 200),  # 05-31: Growth again, April's overage on Pro
    ("manual", 750),  # 06-10: the last period's overage, on a one-off invoice
    ("manual", 40),  # 06-10: the late minutes left pending, on the final invoice
]


async def test_five_months_of_one_call_center_billed_to_the_cent(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    center = CallCenter(client, app, fake_stripe, clock, make_token)
    growth = await create_synced_plan(session, fake_stripe, slug="growth", trial_days=14)
    pro = await create_synced_plan(
        session,
        fake_stripe,
        slug="pro",
        monthly_price=14_900,
        yearly_price=149_000,
        included_minutes=5_000,
        overage_rate_per_minute=Decimal(2),
        trial_days=0,
    )
    add_on = await create_synced_add_on(session, fake_stripe, slug="extra-minutes")

    # 01-17: subscribes with a 14-day trial: the anchor is its end, 01-31 00:00.
    center.at(utc("2027-01-17T00:00:00"))
    response = await client.post(
        "/subscriptions/api/subscribe/",
        json={"plan_id": growth.id, "payment_method_id": "pm_card_visa"},
        headers=bearer(center.user),
    )
    assert response.status_code == 200, response.text
    assert center.subscription["billing_cycle_anchor"] == int(utc("2027-01-31").timestamp())
    await center.use("2027-01-20T10:00:00Z", "1500")

    # 01-31: the trial ends; the first paid month starts.
    center.at(utc("2027-01-31T00:00:00"))
    center.subscription["status"] = "active"
    await center.event("customer.subscription.updated", center.subscription)
    await center.renew()

    # January (01-31 to 02-28): records on both sides of the anchor day's midnight.
    await center.use("2027-02-10T09:00:00Z", "2000", agents=12)
    await center.use("2027-02-27T23:59:59Z", "100.5")
    center.at(utc("2027-02-28T00:00:00"))
    await center.renew()
    await center.use("2027-02-28T00:00:00Z", "600")  # February's first call

    # 03-02: a late call of January arrives after January was billed.
    center.at(utc("2027-03-02T08:00:00"))
    await center.use("2027-02-20T15:00:00Z", "10")
    assert await bill_overage_adjustments(app_job_ctx(app)) == 1

    # 03-10: upgraded to Pro, which prices all of February's period.
    center.at(utc("2027-03-10T12:00:00"))
    await center.manage(action="upgrade", plan_id=pro.id)
    await center.event("invoice.paid", fake_stripe.invoices[center.subscription["latest_invoice"]])
    await center.use("2027-03-20T12:00:00Z", "5000")
    center.at(utc("2027-03-31T00:00:00"))
    # The renewal's payment fails, and recovers on the service's second retry (04-02).
    await center.renew_declined_then_recovered()
    subscription = await local_subscription(session)
    assert (subscription.status, subscription.failed_payment_attempts) == ("active", 0)

    # March (03-31 to 04-30): an add-on held from 04-10 to 04-20.
    await center.use("2027-04-05T12:00:00Z", "5500")
    center.at(utc("2027-04-10T00:00:00"))
    await center.manage(action="add_addon", addon_id=add_on.id, quantity=1)
    await center.event("invoice.paid", fake_stripe.invoices[center.subscription["latest_invoice"]])
    center.at(utc("2027-04-20T00:00:00"))
    await center.manage(action="remove_addon", addon_id=add_on.id)
    center.at(utc("2027-04-30T00:00:00"))
    await center.renew()

    # April (04-30 to 05-31) on Pro: 5,100 minutes; a downgrade to Growth for the period end.
    await center.use("2027-05-05T12:00:00Z", "5100")
    center.at(utc("2027-05-12T00:00:00"))
    await center.manage(action="downgrade", plan_id=growth.id)
    center.at(utc("2027-05-31T00:00:00"))
    # Stripe's schedule moves the plan item at the renewal, and its update event reaches us
    # before the renewal's invoice.created: April is still priced on Pro.
    draft = fake_stripe.renew_subscription(center.subscription["id"])
    assert draft["lines"]["data"][0]["pricing"]["price_details"]["price"] == (
        growth.stripe_monthly_price_id
    )
    await center.event("customer.subscription.updated", center.subscription)
    await center.event("invoice.created", draft)
    center.at(utc("2027-05-31T01:00:00"))
    await center.settle(draft["id"])
    assert (await local_subscription(session)).plan_id == growth.id

    # May (05-31 to 06-30) on Growth: 2,300 minutes; on 06-05 a late call of April, billed
    # with the next invoice; on 06-10, canceled at once with that still pending.
    await center.use("2027-06-02T12:00:00Z", "2300")
    center.at(utc("2027-06-05T00:00:00"))
    await center.use("2027-05-20T12:00:00Z", "20")
    assert await bill_overage_adjustments(app_job_ctx(app)) == 1
    center.at(utc("2027-06-10T00:00:00"))
    await center.manage(action="cancel", at_period_end=False)
    await run_queued_jobs(app, bill_ended_subscription_usage, process_stripe_event)
    await center.event("customer.subscription.deleted", center.subscription)
    for invoice in list(fake_stripe.invoices.values()):
        if invoice["billing_reason"] == "manual":
            await center.settle(invoice["id"])

    # Every charge, to the cent.
    charges = await overage_charges(session)
    assert overage_lines(charges) == EXPECTED_OVERAGE
    # Every invoice's total, in order.
    invoices = sorted(fake_stripe.invoices.values(), key=lambda invoice: invoice["created"])
    assert [(invoice["billing_reason"], invoice["total"]) for invoice in invoices] == (
        EXPECTED_INVOICES
    )
    assert {invoice["status"] for invoice in invoices} == {"paid"}
    # Billing history lists each charge once, on the invoice that carries it.
    overage_rows = (
        await session.scalars(select(BillingHistory).where(BillingHistory.type == "overage"))
    ).all()
    assert sorted(row.overage_charge_id or 0 for row in overage_rows) == sorted(
        c.id for c in charges
    )
    assert {row.status for row in overage_rows} == {"paid"}
    # And Stripe and the service agree on everything.
    report = await reconcile_with_stripe(
        sessionmaker=app.state.sessionmaker,
        gateway=app.state.stripe_gateway,
        clock=clock,
        fix=False,
        since=None,
        max_attempts=3,
    )
    assert report.catch_up.outcomes.get("processed", 0) == 0
    assert report.found == []
