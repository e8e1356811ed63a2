"""Dunning end to end: a renewal that fails, the service's own retries (Stripe's turned off),
recovery by any means, suspension and the final action, with the injected clock and the
Stripe fake (which models `auto_advance`, `POST /v1/invoices/{id}/pay` and Stripe's own
retry schedule, so each test can show Stripe never also retries)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.models import Notification, PaymentRetry
from app.subscriptions.tasks import retry_payment_with_new_card, run_payment_retry, sweep_dunning
from app.usage.tasks import bill_ended_subscription_usage
from app.webhooks.tasks import process_stripe_event
from tests.cli.conftest import invoke
from tests.conftest import TokenFactory, bearer, make_settings
from tests.factories import subscribe_through_api
from tests.running_jobs import app_job_ctx, job_ctx, run_queued_jobs
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import deliver, local_subscription, setup_intent_payload

CARD = "pm_card_visa"  # the card subscribe_through_api pays with: the customer's default
DECLINED = ("requires_payment_method", "insufficient_funds")
DAY = timedelta(days=1)
DUNNING_JOBS = {"run_payment_retry", "retry_payment_with_new_card"}
ENTITLEMENTS = "/subscriptions/api/entitlements/"
MANAGE = "/subscriptions/api/manage/"
ADMIN_DUNNING = "/subscriptions/api/admin/dunning/"


@dataclass
class Dunning:
    client: httpx.AsyncClient
    app: FastAPI
    session: AsyncSession
    fake: FakeStripe
    clock: FrozenClock
    make_token: TokenFactory
    stripe_subscription: dict[str, Any]
    invoice_id: str
    failed_at: datetime

    def advance(self, by: timedelta) -> None:
        """Time passes for us and for Stripe alike; Stripe runs its own retry schedule."""
        self.clock.advance(by)
        self.fake.now = int(self.clock.now().timestamp())
        self.fake.run_stripe_retries()

    async def event(self, event_type: str, obj: dict[str, Any]) -> None:
        event = self.fake.event(event_type, obj)
        outcome = await deliver(self.client, self.app, event, timestamp=self.fake.now)
        assert outcome == "processed"

    async def stripe_reports_the_invoice(self) -> None:
        """The event Stripe sends after an attempt at the invoice: failed or paid."""
        invoice = self.fake.invoices[self.invoice_id]
        paid = invoice["status"] == "paid"
        await self.event("invoice.paid" if paid else "invoice.payment_failed", invoice)

    async def sweep_and_run(self, *, redis: object | None = None) -> list[str]:
        """The worker's minute: the sweeper enqueues what is due, the queued retries run."""
        await sweep_dunning(app_job_ctx(self.app, redis=redis))
        return await self.run_jobs()

    async def run_jobs(self) -> list[str]:
        """The queued jobs, run once; the webhook's own (already processed here) left out."""
        ran = await run_queued_jobs(
            self.app,
            run_payment_retry,
            retry_payment_with_new_card,
            process_stripe_event,
            bill_ended_subscription_usage,
        )
        return [name for name in ran if name in DUNNING_JOBS]

    def pay_calls(self) -> list[str | None]:
        calls = self.fake.calls("POST", f"/v1/invoices/{self.invoice_id}/pay")
        return [call.idempotency_key for call in calls]

    def charges_attempted(self) -> list[str]:
        return [who for invoice, who in self.fake.payment_attempts if invoice == self.invoice_id]

    async def entitlements(self) -> dict[str, Any]:
        response = await self.client.get(ENTITLEMENTS, headers=bearer(self.make_token("42")))
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()["entitlements"]
        return result

    async def retries(self) -> list[tuple[int, str]]:
        rows = await self.session.scalars(
            select(PaymentRetry)
            .order_by(PaymentRetry.attempt)
            .execution_options(populate_existing=True)
        )
        return [(row.attempt, row.status) for row in rows]

    async def notices(self) -> list[str]:
        # Dunning's notices: the welcome of the subscribe that set the scene is not one.
        rows = await self.session.scalars(
            select(Notification.kind)
            .where(Notification.kind != "welcome")
            .order_by(Notification.id)
        )
        return list(rows)


@pytest.fixture
async def dunning(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    clock: FrozenClock,
) -> Dunning:
    """User 42 subscribed; at the renewal their card is declined: Stripe's attempt at the
    finalized invoice fails and `invoice.payment_failed` is delivered and processed."""
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    fake_stripe.card_outcomes[CARD] = DECLINED
    fake_stripe.now = min(
        item["current_period_end"] for item in stripe_subscription["items"]["data"]
    )
    clock.set(datetime.fromtimestamp(fake_stripe.now, UTC))
    draft = fake_stripe.renew_subscription(stripe_subscription["id"])
    fake_stripe.finalize_invoice(draft["id"])
    assert fake_stripe.collect_automatically(draft["id"]) == "failed"
    state = Dunning(
        client,
        app,
        session,
        fake_stripe,
        clock,
        make_token,
        stripe_subscription,
        draft["id"],
        clock.now(),
    )
    await state.stripe_reports_the_invoice()
    return state


async def test_a_failed_renewal_enters_dunning_with_access_kept_and_stripe_retries_off(
    dunning: Dunning,
) -> None:
    subscription = await local_subscription(dunning.session)
    assert subscription.status == "past_due"
    assert subscription.failed_payment_attempts == 1
    assert subscription.last_decline_code == "insufficient_funds"
    assert subscription.grace_period_ends_at == dunning.failed_at + 3 * DAY
    assert subscription.next_payment_retry_at == dunning.failed_at + DAY
    assert await dunning.retries() == [(1, "scheduled"), (2, "scheduled"), (3, "scheduled")]
    # Stripe's automatic collection is off for the invoice: its retry schedule is gone.
    invoice = dunning.fake.invoices[dunning.invoice_id]
    assert invoice["auto_advance"] is False and invoice["next_payment_attempt"] is None
    assert subscription.dunning_auto_advance_off

    entitlements = await dunning.entitlements()
    assert entitlements["call_allowed"] is True and entitlements["in_grace"] is True
    assert entitlements["grace_period_end"] == (dunning.failed_at + 3 * DAY).isoformat().replace(
        "+00:00", "Z"
    )
    assert entitlements["next_payment_retry"] is not None
    manage = await dunning.client.get(MANAGE, headers=bearer(dunning.make_token("42")))
    assert manage.json()["subscription"]["in_grace"] is True
    assert await dunning.notices() == ["payment_failed"]

    # A redelivery of the same failure schedules nothing more and tells nobody again.
    await dunning.stripe_reports_the_invoice()
    assert len(await dunning.retries()) == 3
    assert await dunning.notices() == ["payment_failed"]


async def test_retry_one_fails_retry_two_succeeds_and_stripe_never_retries(
    dunning: Dunning,
) -> None:
    # Nothing is due before the first retry.
    assert await dunning.sweep_and_run() == []

    dunning.advance(DAY)
    assert await dunning.sweep_and_run() == ["run_payment_retry"]
    await dunning.stripe_reports_the_invoice()
    subscription = await local_subscription(dunning.session)
    assert subscription.status == "past_due"
    assert subscription.failed_payment_attempts == 2
    assert await dunning.retries() == [(1, "failed"), (2, "scheduled"), (3, "scheduled")]

    dunning.advance(DAY)
    del dunning.fake.card_outcomes[CARD]  # the bank approves this time
    assert await dunning.sweep_and_run() == ["run_payment_retry"]

    subscription = await local_subscription(dunning.session)
    assert subscription.status == "active"
    assert subscription.failed_payment_attempts == 0
    assert subscription.grace_period_ends_at is None
    assert subscription.dunning_invoice_id is None
    assert await dunning.retries() == [(1, "failed"), (2, "succeeded"), (3, "canceled")]
    assert dunning.fake.invoices[dunning.invoice_id]["status"] == "paid"
    # Stripe's invoice.paid arrives after: nothing changes, nobody is told twice.
    await dunning.stripe_reports_the_invoice()
    assert await dunning.notices() == [
        "payment_failed",
        "payment_retry_failed",
        "payment_recovered",
    ]

    # Exactly one charge per key, Stripe's own attempt only at the renewal itself.
    keys = dunning.pay_calls()
    assert keys == [
        f"dunning-retry:{dunning.invoice_id}:1",
        f"dunning-retry:{dunning.invoice_id}:2",
    ]
    assert dunning.charges_attempted() == ["stripe_automatic", "pay", "pay"]
    dunning.advance(10 * DAY)
    assert await dunning.sweep_and_run() == []
    assert dunning.charges_attempted() == ["stripe_automatic", "pay", "pay"]
    entitlements = await dunning.entitlements()
    assert entitlements["call_allowed"] is True and entitlements["in_grace"] is False


async def _fail_every_retry(dunning: Dunning) -> None:
    for _ in range(3):
        dunning.advance(DAY)
        assert await dunning.sweep_and_run() == ["run_payment_retry"]
        await dunning.stripe_reports_the_invoice()


async def test_retries_used_up_past_grace_suspend_once_and_notify_once(dunning: Dunning) -> None:
    await _fail_every_retry(dunning)
    # The last retry ran as the grace period ended; the next sweep suspends.
    dunning.advance(timedelta(minutes=1))
    assert await dunning.sweep_and_run() == []

    subscription = await local_subscription(dunning.session)
    assert subscription.status == "past_due"
    assert subscription.payment_overdue_at == dunning.clock.now()
    assert subscription.failed_payment_attempts == 4  # Stripe's attempt, then our three
    entitlements = await dunning.entitlements()
    assert entitlements["call_allowed"] is False and entitlements["suspended"] is True
    assert entitlements["reason"] == "payment_overdue"

    for _ in range(3):
        dunning.advance(DAY)
        assert await dunning.sweep_and_run() == []
    notices = await dunning.notices()
    assert notices.count("payment_overdue_suspended") == 1
    assert notices.count("payment_retry_failed") == 3
    # `suspend` (the default) never cancels, and Stripe never retried nor canceled either.
    assert dunning.fake.subscriptions[dunning.stripe_subscription["id"]]["status"] != "canceled"
    assert dunning.charges_attempted() == ["stripe_automatic", "pay", "pay", "pay"]
    assert dunning.fake.invoices[dunning.invoice_id]["status"] == "open"

    # Paid at last on the hosted page: access back at once.
    dunning.fake.pay_invoice_out_of_band(dunning.invoice_id)
    await dunning.stripe_reports_the_invoice()
    entitlements = await dunning.entitlements()
    assert entitlements["call_allowed"] is True and entitlements["reason"] is None
    assert (await local_subscription(dunning.session)).status == "active"


async def test_an_operator_suspension_is_not_lifted_by_a_recovered_payment(
    dunning: Dunning,
) -> None:
    admin = bearer(dunning.make_token("1", roles=["billing_admin"]))
    response = await dunning.client.post(
        "/subscriptions/api/admin/customers/42/suspension/", json={"reason": "abuse"}, headers=admin
    )
    assert response.status_code == 200, response.text
    dunning.fake.pay_invoice_out_of_band(dunning.invoice_id)
    await dunning.stripe_reports_the_invoice()
    entitlements = await dunning.entitlements()
    assert entitlements["call_allowed"] is False and entitlements["reason"] == "suspended"


async def test_final_action_cancel_cancels_once_and_marks_the_invoice_uncollectible(
    dunning: Dunning, database_url: str, redis_url: str
) -> None:
    await _fail_every_retry(dunning)
    settings = make_settings(
        database_url, redis_url, DUNNING_FINAL_ACTION="cancel", DUNNING_CANCEL_AFTER_DAYS=7
    )
    ctx = job_ctx(
        settings=settings,
        clock=dunning.clock,
        sessionmaker=dunning.app.state.sessionmaker,
        stripe_gateway=dunning.app.state.stripe_gateway,
        redis=dunning.app.state.redis,
    )
    dunning.advance(timedelta(minutes=1))
    await sweep_dunning(ctx)  # suspended now
    dunning.advance(6 * DAY)
    await sweep_dunning(ctx)
    assert dunning.fake.calls("DELETE", "/v1/subscriptions/") == []

    dunning.advance(DAY)
    await sweep_dunning(ctx)
    await sweep_dunning(ctx)

    stripe_id = dunning.stripe_subscription["id"]
    assert len(dunning.fake.calls("DELETE", f"/v1/subscriptions/{stripe_id}")) == 1
    assert dunning.fake.subscriptions[stripe_id]["status"] == "canceled"
    assert dunning.fake.invoices[dunning.invoice_id]["status"] == "uncollectible"
    subscription = await local_subscription(dunning.session)
    assert subscription.status == "canceled"
    assert (await dunning.notices()).count("canceled_for_nonpayment") == 1
    # Stripe's events of the cancel and the uncollectible invoice: billing history shows it.
    await dunning.event("invoice.marked_uncollectible", dunning.fake.invoices[dunning.invoice_id])
    await dunning.event("customer.subscription.deleted", dunning.fake.subscriptions[stripe_id])
    history = await dunning.client.get(
        "/subscriptions/api/billing-history/", headers=bearer(dunning.make_token("42"))
    )
    statuses = {
        entry["stripe_invoice_id"]: entry["status"] for entry in history.json()["billing_history"]
    }
    assert statuses[dunning.invoice_id] == "uncollectible"


async def test_no_retry_after_an_immediate_cancel_during_dunning(dunning: Dunning) -> None:
    response = await dunning.client.post(
        MANAGE,
        json={"action": "cancel", "at_period_end": False},
        headers=bearer(dunning.make_token("42")),
    )
    assert response.status_code == 200, response.text
    stripe_id = dunning.stripe_subscription["id"]
    await dunning.event("customer.subscription.deleted", dunning.fake.subscriptions[stripe_id])

    for _ in range(4):
        dunning.advance(DAY)
        await dunning.sweep_and_run()

    assert dunning.pay_calls() == []
    assert dunning.charges_attempted() == ["stripe_automatic"]
    assert {status for _, status in await dunning.retries()} == {"canceled"}
    # The open invoice is left open, collected by nobody.
    assert dunning.fake.invoices[dunning.invoice_id]["status"] == "open"


async def test_a_new_default_card_retries_at_once_and_recovers(dunning: Dunning) -> None:
    response = await dunning.client.post(
        "/subscriptions/api/payment-methods/",
        json={"payment_method_id": "pm_card_mastercard", "set_default": True},
        headers=bearer(dunning.make_token("42")),
    )
    assert response.status_code == 200, response.text

    assert await dunning.run_jobs() == ["retry_payment_with_new_card"]

    subscription = await local_subscription(dunning.session)
    assert subscription.status == "active" and subscription.dunning_invoice_id is None
    [call] = dunning.fake.calls("POST", f"/v1/invoices/{dunning.invoice_id}/pay")
    assert call.params["payment_method"] == "pm_card_mastercard"
    assert call.idempotency_key == f"dunning-retry:{dunning.invoice_id}:4"
    assert await dunning.retries() == [
        (1, "canceled"),
        (2, "canceled"),
        (3, "canceled"),
        (4, "succeeded"),
    ]


async def test_sca_on_a_retry_stops_retries_asks_the_customer_and_their_payment_recovers(
    dunning: Dunning,
) -> None:
    dunning.fake.card_outcomes[CARD] = ("requires_action", None)
    dunning.advance(DAY)
    assert await dunning.sweep_and_run() == ["run_payment_retry"]

    assert await dunning.retries() == [(1, "action_required"), (2, "canceled"), (3, "canceled")]
    notice = await dunning.session.scalar(
        select(Notification).where(Notification.kind == "payment_action_required")
    )
    assert notice is not None
    assert notice.payload["hosted_invoice_url"].endswith(dunning.invoice_id)
    manage = await dunning.client.get(MANAGE, headers=bearer(dunning.make_token("42")))
    assert manage.json()["subscription"]["payment_action_required"] is True
    # Stripe's own event for the same fact tells the customer nothing new.
    await dunning.event(
        "invoice.payment_action_required", dunning.fake.invoices[dunning.invoice_id]
    )
    assert (await dunning.notices()).count("payment_action_required") == 1

    dunning.advance(DAY)
    assert await dunning.sweep_and_run() == []
    assert len(dunning.pay_calls()) == 1

    # The customer authenticates on the hosted page.
    dunning.fake.pay_invoice_out_of_band(dunning.invoice_id)
    await dunning.stripe_reports_the_invoice()
    subscription = await local_subscription(dunning.session)
    assert subscription.status == "active" and not subscription.dunning_action_required
    assert "payment_recovered" in await dunning.notices()


class _RedisDown:
    async def enqueue_job(self, *args: object, **kwargs: object) -> None:
        raise RedisConnectionError("Connection refused")


async def test_a_retry_due_while_redis_is_down_runs_once_when_it_is_back(dunning: Dunning) -> None:
    dunning.advance(DAY)
    assert await dunning.sweep_and_run(redis=_RedisDown()) == []
    assert await dunning.retries() == [(1, "scheduled"), (2, "scheduled"), (3, "scheduled")]

    dunning.advance(timedelta(minutes=1))
    assert await dunning.sweep_and_run() == ["run_payment_retry"]
    dunning.advance(timedelta(minutes=1))
    assert await dunning.sweep_and_run() == []

    assert dunning.pay_calls() == [f"dunning-retry:{dunning.invoice_id}:1"]
    assert await dunning.retries() == [(1, "failed"), (2, "scheduled"), (3, "scheduled")]


async def test_a_retry_whose_worker_died_after_stripe_acted_is_finished_without_a_second_charge(
    dunning: Dunning,
) -> None:
    path = f"/v1/invoices/{dunning.invoice_id}/pay"
    dunning.fake.fail_next("POST", path, timeout=True, after_acting=True)
    dunning.advance(DAY)
    with pytest.raises(Exception):  # noqa: B017 (whatever the lost answer raises)
        await dunning.sweep_and_run()
    assert await dunning.retries() == [(1, "running"), (2, "scheduled"), (3, "scheduled")]

    # Within the lease the row is left alone; after it, the same attempt runs again.
    assert await dunning.sweep_and_run() == []
    dunning.advance(timedelta(minutes=6))
    assert await dunning.sweep_and_run() == ["run_payment_retry"]

    assert await dunning.retries() == [(1, "failed"), (2, "scheduled"), (3, "scheduled")]
    assert dunning.pay_calls() == [f"dunning-retry:{dunning.invoice_id}:1"] * 2
    assert dunning.charges_attempted() == ["stripe_automatic", "pay"]


async def test_paid_on_the_hosted_page_between_two_retries_no_further_retry(
    dunning: Dunning,
) -> None:
    dunning.advance(DAY)
    assert await dunning.sweep_and_run() == ["run_payment_retry"]
    await dunning.stripe_reports_the_invoice()

    dunning.advance(timedelta(hours=5))
    dunning.fake.pay_invoice_out_of_band(dunning.invoice_id)
    await dunning.stripe_reports_the_invoice()
    assert (await local_subscription(dunning.session)).status == "active"

    for _ in range(3):
        dunning.advance(DAY)
        assert await dunning.sweep_and_run() == []
    assert dunning.pay_calls() == [f"dunning-retry:{dunning.invoice_id}:1"]
    assert await dunning.retries() == [(1, "failed"), (2, "canceled"), (3, "canceled")]
    assert (await dunning.notices()).count("payment_recovered") == 1


async def test_operators_list_dunning_and_retry_now(dunning: Dunning) -> None:
    admin = bearer(dunning.make_token("1", roles=["billing_admin"]))
    listed = await dunning.client.get(ADMIN_DUNNING, headers=admin)
    assert listed.status_code == 200, listed.text
    [entry] = listed.json()["dunning"]
    assert entry["customer_id"] == "42" and entry["state"] == "retrying"
    assert entry["invoice"] == dunning.invoice_id
    assert entry["failed_payment_attempts"] == 1
    assert entry["last_decline_code"] == "insufficient_funds"
    assert [retry["status"] for retry in entry["retries"]] == ["scheduled"] * 3
    subscription_id = entry["subscription_id"]

    retried = await dunning.client.post(f"{ADMIN_DUNNING}{subscription_id}/retry/", headers=admin)
    assert retried.status_code == 200, retried.text
    assert retried.json()["outcome"] == "failed"
    assert retried.json()["dunning"]["retries"][-1]["trigger"] == "operator"
    assert dunning.pay_calls() == [f"dunning-retry:{dunning.invoice_id}:4"]

    # One in flight: a second is refused.
    await dunning.session.execute(
        update(PaymentRetry).where(PaymentRetry.attempt == 1).values(status="running")
    )
    await dunning.session.commit()
    busy = await dunning.client.post(f"{ADMIN_DUNNING}{subscription_id}/retry/", headers=admin)
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "payment_retry_in_progress"
    await dunning.session.execute(
        update(PaymentRetry).where(PaymentRetry.attempt == 1).values(status="failed")
    )
    await dunning.session.commit()

    del dunning.fake.card_outcomes[CARD]
    recovered = await dunning.client.post(f"{ADMIN_DUNNING}{subscription_id}/retry/", headers=admin)
    assert recovered.json() == {"success": True, "outcome": "succeeded", "dunning": None}

    not_dunned = await dunning.client.post(
        f"{ADMIN_DUNNING}{subscription_id}/retry/", headers=admin
    )
    assert not_dunned.status_code == 409
    assert not_dunned.json()["error"]["code"] == "not_in_dunning"
    assert (await dunning.client.get(ADMIN_DUNNING, headers=admin)).json()["dunning"] == []
    customer = await dunning.client.get(ADMIN_DUNNING, headers=bearer(dunning.make_token("42")))
    assert customer.status_code == 403


async def test_billing_dunning_prints_the_same_table(
    dunning: Dunning, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = dunning.app.state.settings
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("JWT_SECRET", settings.JWT_SECRET.get_secret_value())
    result = await invoke("dunning")
    assert result.exit_code == 0, result.output
    header, row = result.output.splitlines()
    assert header.split()[:3] == ["subscription", "customer", "state"]
    assert row.split()[1:6] == ["42", "retrying", "past_due", dunning.invoice_id, "1"]
    assert "insufficient_funds" in row


async def test_the_dunned_invoice_voided_on_stripes_dashboard_ends_dunning_without_retries(
    dunning: Dunning,
) -> None:
    invoice = dunning.fake.invoices[dunning.invoice_id]
    invoice.update(status="void", auto_advance=False)
    await dunning.event("invoice.voided", invoice)

    subscription = await local_subscription(dunning.session)
    assert subscription.dunning_invoice_id is None and subscription.grace_period_ends_at is None
    for _ in range(4):
        dunning.advance(DAY)
        assert await dunning.sweep_and_run() == []
    assert dunning.pay_calls() == []
    assert {status for _, status in await dunning.retries()} == {"canceled"}
    entitlements = await dunning.entitlements()
    assert entitlements["call_allowed"] is True and entitlements["in_grace"] is False


async def test_a_card_set_up_as_the_new_default_retries_at_once(dunning: Dunning) -> None:
    [customer] = dunning.fake.customers.values()
    dunning.fake.add_payment_method("pm_card_replacement", customer=customer["id"])
    customer["invoice_settings"]["default_payment_method"] = "pm_card_replacement"
    setup_intent = setup_intent_payload(customer["id"], "pm_card_replacement")

    await dunning.event("setup_intent.succeeded", setup_intent)

    subscription = await local_subscription(dunning.session)
    assert subscription.status == "active" and subscription.dunning_invoice_id is None
    [call] = dunning.fake.calls("POST", f"/v1/invoices/{dunning.invoice_id}/pay")
    assert call.params["payment_method"] == "pm_card_replacement"


async def test_a_card_set_up_that_is_not_the_default_retries_nothing(dunning: Dunning) -> None:
    [customer] = dunning.fake.customers.values()
    dunning.fake.add_payment_method("pm_card_spare", customer=customer["id"])

    await dunning.event(
        "setup_intent.succeeded", setup_intent_payload(customer["id"], "pm_card_spare")
    )

    assert dunning.pay_calls() == []
    assert (await local_subscription(dunning.session)).status == "past_due"


async def test_payment_notices_are_listed_as_payment_alerts_beside_the_usage_alerts(
    dunning: Dunning,
) -> None:
    headers = bearer(dunning.make_token("42"))
    response = await dunning.client.get("/subscriptions/api/alerts/", headers=headers)
    assert response.status_code == 200, response.text
    [failed] = response.json()["alerts"]
    assert (failed["kind"], failed["priority"], failed["action_required"]) == (
        "payment_failed",
        "high",
        True,
    )
    # A redelivery of the failure adds no second alert; the recovery adds its own.
    await dunning.stripe_reports_the_invoice()
    dunning.fake.pay_invoice_out_of_band(dunning.invoice_id)
    await dunning.stripe_reports_the_invoice()

    response = await dunning.client.get("/subscriptions/api/alerts/", headers=headers)
    assert [alert["kind"] for alert in response.json()["alerts"]] == [
        "payment_recovered",
        "payment_failed",
    ]
