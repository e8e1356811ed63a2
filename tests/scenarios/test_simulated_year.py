"""A call center's year, 2027-01-31 to 2028-04-10, on the injected clock and the stateful Stripe
fake: a monthly start, an add-on bought, a switch to yearly mid-period (the add-on moved to
its yearly price in the same update, the period cut there a stub), twelve monthly usage
periods billed while the yearly price is paid once (a late record among them), and back to
monthly at the end of the yearly term. Every invoice's lines are compared with the tables
below, computed by hand; each charge is once in billing history; `billing reconcile` finds
no drift. (The trial, the boundary records, the failed renewal, the downgrade and the
immediate cancel are the months in test_simulated_months.py.)

On the yearly term no renewal closes the monthly usage periods: the `close_ended_usage_periods`
cron closes each an hour after it ended, and its items wait, pending, for the invoice Stripe
makes every `pending_invoice_item_interval` (a month; the service sets it on the subscription
with the first yearly charge). So a month's overage is on the pending items' invoice after
the one due when it closed.

Stripe's proration here is the fake's: a change of cycle invoices the new price in full and
credits the whole old one (not prorated by time); the service passes the amounts through.
"""

from datetime import UTC, datetime
from decimal import Decimal

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.core.periods import add_months
from app.models import BillingHistory
from app.stripe_sync.reconcile import reconcile_with_stripe
from app.usage.tasks import bill_overage_adjustments, close_ended_usage_periods
from tests.conftest import TokenFactory, bearer
from tests.factories import create_synced_add_on, create_synced_plan
from tests.running_jobs import app_job_ctx
from tests.scenarios.call_center import CallCenter, overage_charges, overage_lines, utc
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import local_subscription

# (period, line, quantity, rate in cents, amount in cents), by hand:
# Growth: 2,000 min and 10 agents included a month, 2.5 c/min, 1,500 c/agent; $99.00 a month,
# $990.00 a year. The add-on, held from 03-01 on: 1,000 extra minutes a month; $20.00 a month,
# $200.00 a year.
EXPECTED_OVERAGE = [
    ("2027-01-31", "minutes", Decimal(400), Decimal("2.5"), 1_000),  # 2,400 - 2,000
    # The stub 02-28 to 03-10, cut by the switch to yearly: Growth's full monthly allowance,
    # and the add-on for the 9 of its 10 days held: 3,000 - 2,000 - 900 = 100.
    ("2027-02-28", "minutes", Decimal(100), Decimal("2.5"), 250),
    # The yearly term's monthly periods, from the new anchor 03-10: 3,000 minutes included.
    ("2027-03-10", "minutes", Decimal(600), Decimal("2.5"), 1_500),  # 3,600 - 3,000
    ("2027-05-10", "minutes (late)", Decimal(500), Decimal("2.5"), 1_250),  # 3,500 - 3,000
    ("2027-08-10", "minutes", Decimal(1_000), Decimal("2.5"), 2_500),  # 4,000 - 3,000
    ("2027-08-10", "agents", 1, Decimal(1_500), 1_500),  # peak 11 of 10
    ("2028-02-10", "minutes", Decimal(200), Decimal("2.5"), 500),  # 3,200 - 3,000
    # Monthly again from 2028-03-10, the add-on too.
    ("2028-03-10", "minutes", Decimal(500), Decimal("2.5"), 1_250),  # 3,500 - 3,000
]
# Minutes used in each of the yearly term's twelve periods (and agents, where any).
YEARLY_USAGE = [
    ("3600", None),
    ("2800", None),
    ("1000", None),
    ("1000", None),
    ("1000", None),
    ("4000", 11),
    ("1000", None),
    ("1000", None),
    ("1000", None),
    ("1000", None),
    ("1000", None),
    ("3200", None),
]
EXPECTED_INVOICES = [
    # (day, billing reason, each line's amount in cents); the total is their sum.
    ("2027-01-31", "subscription_create", [9_900]),  # the first month
    ("2027-02-28", "subscription_cycle", [9_900, 1_000]),  # Growth and January's overage
    ("2027-03-01", "subscription_update", [2_000]),  # the add-on (the fake prorates whole)
    # To yearly, the add-on too: each year in full, the month's price credited whole.
    ("2027-03-10", "subscription_update", [99_000, -9_900, 20_000, -2_000]),
    # The pending items' invoices, monthly: the stub's overage, then March's (closed on
    # 04-10 at 01:00, an hour after this invoice), May's adjustment, then August's minutes
    # and agents. The months with nothing pending get no invoice.
    ("2027-04-10", "manual", [250]),
    ("2027-05-10", "manual", [1_500]),
    ("2027-07-10", "manual", [1_250]),  # May's late call (06-25), an adjustment
    ("2027-10-10", "manual", [2_500, 1_500]),
    # The yearly term ends: monthly again, and February's overage, closed by this renewal.
    ("2028-03-10", "subscription_cycle", [9_900, 2_000, 500]),
    ("2028-04-10", "subscription_cycle", [9_900, 2_000, 1_250]),
]


async def test_a_year_switched_to_yearly_and_back_to_monthly_billed_to_the_cent(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> None:
    center = CallCenter(client, app, fake_stripe, clock, make_token)
    growth = await create_synced_plan(session, fake_stripe, slug="growth", trial_days=0)
    add_on = await create_synced_add_on(session, fake_stripe, slug="extra-minutes")

    # 01-31: subscribes to Growth, monthly; the first month is paid at once.
    center.at(utc("2027-01-31T00:00:00"))
    response = await client.post(
        "/subscriptions/api/subscribe/",
        json={"plan_id": growth.id, "payment_method_id": "pm_card_visa"},
        headers=bearer(center.user),
    )
    assert response.status_code == 200, response.text
    await center.event("invoice.paid", fake_stripe.invoices[center.subscription["latest_invoice"]])
    await center.use("2027-02-10T09:00:00Z", "2400")
    center.at(utc("2027-02-28T00:00:00"))
    await center.renew()

    # 03-01: an add-on of 1,000 minutes a month. 03-10: to yearly, now (a longer cycle
    # starts at once), the add-on moved to its yearly price in the same update: Stripe
    # restarts the cycle, and the period 02-28 to 03-10 is a stub closed by the change.
    center.at(utc("2027-03-01T00:00:00"))
    await center.manage(action="add_addon", addon_id=add_on.id, quantity=1)
    await center.event("invoice.paid", fake_stripe.invoices[center.subscription["latest_invoice"]])
    await center.use("2027-03-05T12:00:00Z", "3000")
    center.at(utc("2027-03-10T00:00:00"))
    await center.manage(action="change_plan", billing_cycle="yearly")
    change = fake_stripe.invoices[center.subscription["latest_invoice"]]
    await center.event("customer.subscription.updated", center.subscription)
    await center.event("invoice.created", change)
    await center.event("invoice.paid", change)
    assert (await local_subscription(session)).billing_cycle == "yearly"
    assert center.subscription["billing_cycle_anchor"] == int(utc("2027-03-10").timestamp())

    # In December, back to monthly at the end of the yearly term (a shorter cycle waits).
    term_start = utc("2027-03-10T00:00:00")
    for month, (minutes, agents) in enumerate(YEARLY_USAGE):
        start = add_months(term_start, month)
        end = add_months(term_start, month + 1)
        await center.use(f"{start + (end - start) / 2:%Y-%m-%dT%H:%M:%SZ}", minutes, agents)
        if month == 3:
            # A late call of May (05-10 to 06-10, billed nothing: 1,000 minutes) puts it over.
            await center.use("2027-05-20T12:00:00Z", "2500")
            assert await bill_overage_adjustments(app_job_ctx(app)) == 1
        if month == 9:
            await center.manage(action="change_plan", billing_cycle="monthly")
        if month == len(YEARLY_USAGE) - 1:
            break
        # Stripe invoices the pending items when due; the cron closes the ended month an
        # hour later, its items pending for the next of those invoices.
        center.at(end)
        draft = fake_stripe.invoice_pending_items(center.subscription["id"])
        if draft is not None:
            await center.event("invoice.created", draft)
            center.at(end.replace(hour=1))
            await center.settle(draft["id"])
        center.at(end.replace(hour=1))
        await close_ended_usage_periods(app_job_ctx(app))

    # 2028-03-10: the yearly term ends; the schedule's monthly phase starts at the renewal.
    center.at(utc("2028-03-10T00:00:00"))
    draft = await center.renew()
    assert [line["pricing"]["price_details"]["price"] for line in draft["lines"]["data"][:2]] == [
        growth.stripe_monthly_price_id,
        add_on.stripe_monthly_price_id,
    ]
    assert (await local_subscription(session)).billing_cycle == "monthly"
    await center.use("2028-03-20T12:00:00Z", "3500")
    center.at(utc("2028-04-10T00:00:00"))
    await center.renew()

    # Every charge, to the cent.
    charges = await overage_charges(session)
    assert overage_lines(charges) == EXPECTED_OVERAGE
    invoices = sorted(fake_stripe.invoices.values(), key=lambda invoice: invoice["created"])
    assert [
        (
            f"{datetime.fromtimestamp(invoice['created'], UTC):%Y-%m-%d}",
            invoice["billing_reason"],
            [line["amount"] for line in invoice["lines"]["data"]],
        )
        for invoice in invoices
    ] == EXPECTED_INVOICES
    assert [invoice["total"] for invoice in invoices] == [
        sum(amounts) for _, _, amounts in EXPECTED_INVOICES
    ]
    assert {invoice["status"] for invoice in invoices} == {"paid"}
    billed = [charge for charge in charges if charge.minutes_amount or charge.agents_amount]
    overage_rows = (
        await session.scalars(select(BillingHistory).where(BillingHistory.type == "overage"))
    ).all()
    assert sorted(row.overage_charge_id or 0 for row in overage_rows) == sorted(
        c.id for c in billed
    )
    assert {row.status for row in overage_rows} == {"paid"}
    # As the customer sees it: one overage entry a charge, with its amount.
    response = await client.get(
        "/subscriptions/api/billing-history/",
        params={"type": "overage", "limit": 100, "include_archived": "true"},
        headers=bearer(center.user),
    )
    assert response.status_code == 200, response.text
    assert sorted(entry["amount"] for entry in response.json()["billing_history"]) == sorted(
        charge.minutes_amount + charge.agents_amount for charge in billed
    )
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
