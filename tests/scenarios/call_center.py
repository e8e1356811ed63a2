"""The call center the scenario tests drive through months of billing: its usage, its
manage requests, Stripe's events and invoices on the stateful fake, all on the test's clock."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from stripe import params as stripe_params

from app.core.clock import FrozenClock
from app.models import OverageCharge
from app.subscriptions.tasks import run_payment_retry, sweep_dunning
from app.webhooks.tasks import process_stripe_event
from tests.conftest import TokenFactory, bearer
from tests.running_jobs import app_job_ctx, run_queued_jobs
from tests.stripe.fake import FakeStripe
from tests.stripe.wire import Params, StripeObject, list_object
from tests.usage.helpers import call, post_usage
from tests.webhooks.helpers import deliver

MANAGE = "/subscriptions/api/manage/"
CARD = "pm_card_visa"

OverageLine = tuple[str, str, Decimal | int, Decimal | None, int]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


async def overage_charges(session: AsyncSession) -> list[OverageCharge]:
    """Every overage charge, by period and then in the order they were made."""
    return list(
        await session.scalars(
            select(OverageCharge).order_by(OverageCharge.period_start, OverageCharge.sequence)
        )
    )


def overage_lines(charges: list[OverageCharge]) -> list[OverageLine]:
    """The charges as the tables write them: (period, line, quantity, rate, amount)."""
    lines: list[OverageLine] = []
    for charge in charges:
        day = f"{charge.period_start:%Y-%m-%d}"
        if charge.minutes_amount:
            name = "minutes" if charge.sequence == 0 else "minutes (late)"
            lines.append(
                (day, name, charge.minutes_over, charge.rate_per_minute, charge.minutes_amount)
            )
        if charge.agents_amount:
            lines.append(
                (day, "agents", charge.agents_over, charge.rate_per_agent, charge.agents_amount)
            )
    return lines


class CallCenter:
    def __init__(
        self,
        client: httpx.AsyncClient,
        app: FastAPI,
        fake: FakeStripe,
        clock: FrozenClock,
        make_token: TokenFactory,
    ) -> None:
        self.client, self.app, self.fake, self.clock = client, app, fake, clock
        self.user = make_token("42", lifetime=timedelta(days=600))
        self.service = make_token("9001", roles=["service"], lifetime=timedelta(days=600))
        self.calls = 0
        # What GET /v1/events lists at the end: every event, each delivered.
        self.delivered: list[StripeObject] = []
        fake.add_route("GET", r"/v1/events", stripe_params.EventListParams, self._events)
        fake.add_route("GET", r"/v1/invoices", stripe_params.InvoiceListParams, self._invoices)

    def _events(self, params: Params) -> StripeObject:
        since = int((params.get("created") or {}).get("gte") or 0)
        found = [event for event in reversed(self.delivered) if event["created"] >= since]
        return list_object("/v1/events", found, params)

    def _invoices(self, params: Params) -> StripeObject:
        found = [
            invoice
            for invoice in reversed(self.fake.invoices.values())
            if invoice["customer"] == params.get("customer")
        ]
        return list_object("/v1/invoices", found, params)

    def at(self, moment: datetime) -> None:
        self.fake.now = int(moment.timestamp())
        self.clock.set(moment)

    @property
    def subscription(self) -> Any:
        [subscription] = self.fake.subscriptions.values()
        return subscription

    async def use(self, moment: str, minutes: str, agents: int | None = None) -> None:
        """The telephony backend reports a call as it ends (or later: a late record)."""
        self.at(max(self.clock.now(), datetime.fromisoformat(moment)))
        # A call lasts at most a day: a big month's minutes are many calls.
        left = Decimal(minutes)
        while left > 0:
            self.calls += 1
            part = min(left, Decimal(1_000))
            left -= part
            body = call(f"call-{self.calls}", str(part), timestamp=moment, customer_id=42)
            response = await post_usage(self.client, self.service, body)
            assert response.status_code in (200, 201), response.text
        if agents is not None:
            reading = {"agents_active": agents, "timestamp": moment, "customer_id": 42}
            response = await post_usage(self.client, self.service, reading)
            assert response.status_code in (200, 201), response.text

    async def manage(self, **body: Any) -> None:
        response = await self.client.post(MANAGE, json=body, headers=bearer(self.user))
        assert response.status_code == 200, response.text

    async def event(self, event_type: str, obj: Any) -> None:
        event = self.fake.event(event_type, obj)
        self.delivered.append(event)
        assert await deliver(self.client, self.app, event, timestamp=self.fake.now) == ("processed")

    async def settle(self, invoice_id: str) -> None:
        """Stripe finalizes the invoice (a draft an hour later) and charges the card."""
        invoice = self.fake.invoices[invoice_id]
        if invoice["status"] == "draft":
            self.fake.finalize_invoice(invoice_id)
            await self.event("invoice.finalized", invoice)
        if invoice["status"] == "open":
            assert self.fake.collect_automatically(invoice_id) == "paid"
        await self.event("invoice.paid", invoice)

    async def renew_declined_then_recovered(self) -> Any:
        """The renewal's card is declined; the service's first retry (a day later) is
        declined too, the second (a day after that) goes through."""
        self.fake.card_outcomes[CARD] = ("requires_payment_method", "insufficient_funds")
        draft = self.fake.renew_subscription(self.subscription["id"])
        # Stripe tells of the new period, and of the renewal's draft.
        await self.event("customer.subscription.updated", self.subscription)
        await self.event("invoice.created", draft)
        self.at(self.clock.now() + timedelta(hours=1))
        self.fake.finalize_invoice(draft["id"])
        await self.event("invoice.finalized", draft)
        assert self.fake.collect_automatically(draft["id"]) == "failed"
        await self.event("invoice.payment_failed", draft)
        for attempt in (1, 2):
            self.at(self.clock.now() + timedelta(days=1))
            if attempt == 2:
                del self.fake.card_outcomes[CARD]  # the bank approves this time
            await sweep_dunning(app_job_ctx(self.app))
            ran = await run_queued_jobs(self.app, run_payment_retry, process_stripe_event)
            assert "run_payment_retry" in ran
            paid = self.fake.invoices[draft["id"]]["status"] == "paid"
            assert paid == (attempt == 2)
            await self.event("invoice.paid" if paid else "invoice.payment_failed", draft)
        return draft

    async def renew(self) -> Any:
        """The period end: the renewal draft, its invoice.created, then paid an hour later."""
        draft = self.fake.renew_subscription(self.subscription["id"])
        # Stripe tells of the new period, and of the renewal's draft.
        await self.event("customer.subscription.updated", self.subscription)
        await self.event("invoice.created", draft)
        self.at(self.clock.now() + timedelta(hours=1))
        await self.settle(draft["id"])
        return draft
