"""Delivery against real local receivers: an SMTP server (aiosmtpd) and an HTTP endpoint
standing in for the dashboard. Time is the injected clock; retries are driven by running the
delivery job and the sweeper at later times, never by waiting."""

import hashlib
import hmac
import json
from datetime import timedelta
from pathlib import Path

import pytest
import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.metrics import REGISTRY
from app.models import Customer, Notification, NotificationDelivery
from app.notifications import service
from tests.conftest import make_settings
from tests.factories import create_customer
from tests.notifications.conftest import DASHBOARD_SECRET, Worker
from tests.notifications.receivers import DashboardReceiver, SmtpReceiver


async def _customer(session: AsyncSession, **overrides: object) -> Customer:
    values: dict[str, object] = {"email": "ops@acme.test", "name": "Acme Calls", **overrides}
    return await create_customer(session, **values)


async def _payment_failed(
    session: AsyncSession, customer: Customer, clock: FrozenClock, invoice: str = "in_1"
) -> None:
    await service.notify(
        session,
        customer_id=customer.id,
        kind="payment_failed",
        dedupe_key=f"payment_failed:{invoice}",
        payload={
            "invoice": invoice,
            "amount_due": 4_950,
            "currency": "usd",
            "decline_code": "insufficient_funds",
            "grace_period_end": (clock.now() + timedelta(days=3)).isoformat(),
            "next_payment_retry": (clock.now() + timedelta(days=1)).isoformat(),
            "hosted_invoice_url": "https://invoice.stripe.test/i/1",
        },
        now=clock.now(),
    )


async def _deliveries(session: AsyncSession) -> list[tuple[int, str, str, int]]:
    rows = await session.scalars(
        select(NotificationDelivery)
        .order_by(NotificationDelivery.notification_id, NotificationDelivery.channel)
        .execution_options(populate_existing=True)
    )
    return [(row.notification_id, row.channel, row.status, row.attempts) for row in rows]


def _counted(channel: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "billing_notification_deliveries_total", {"channel": channel, "outcome": outcome}
    )
    return value or 0.0


def verify_dashboard_signature(body: bytes, header: str, secret: str, now: float) -> bool:
    """The check of the Django view in README "Notifications", step for step."""
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    timestamp = parts.get("t", "")
    signed = f"{timestamp}.".encode() + body
    expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    fresh = timestamp.isdigit() and abs(now - int(timestamp)) <= 300
    return fresh and hmac.compare_digest(expected, parts.get("v1", ""))


async def test_the_email_arrives_with_its_subject_recipient_and_amounts(
    session: AsyncSession, clock: FrozenClock, worker: Worker, smtp_server: SmtpReceiver
) -> None:
    customer = await _customer(session)
    await _payment_failed(session, customer, clock)
    await session.commit()

    assert await worker.sweep_and_run() == 2

    [received] = smtp_server.received
    assert received.recipients == ["ops@acme.test"]
    assert received.sender == "billing@callcenter.test"
    assert received.message["Subject"] == "Payment of $49.50 failed"
    assert received.message["To"] == "ops@acme.test"
    assert received.message["Message-ID"] == "<ntf_1@callcenter.test>"
    text = received.part("plain")
    assert "We could not collect $49.50" in text and "insufficient_funds" in text
    assert "https://invoice.stripe.test/i/1" in text
    html = received.part("html")
    assert "<strong>$49.50</strong>" in html
    assert 'href="https://invoice.stripe.test/i/1"' in html
    assert await _deliveries(session) == [(1, "dashboard", "sent", 1), (1, "email", "sent", 1)]
    notification = await session.scalar(
        select(Notification).execution_options(populate_existing=True)
    )
    assert notification is not None and notification.status == "sent"


async def test_customer_text_is_escaped_in_the_html_part(
    session: AsyncSession, clock: FrozenClock, worker: Worker, smtp_server: SmtpReceiver
) -> None:
    customer = await _customer(session, name='<script>alert("x")</script> & Co')
    await service.notify(
        session,
        customer_id=customer.id,
        kind="welcome",
        dedupe_key="welcome:1",
        payload={"plan_name": "<b>Growth</b>", "subscription_id": 1},
        now=clock.now(),
    )
    await session.commit()

    await worker.sweep_and_run()

    [received] = smtp_server.received
    html = received.part("html")
    assert "<script>" not in html and "<b>Growth</b>" not in html
    assert "&lt;script&gt;" in html and "&lt;b&gt;Growth&lt;/b&gt;" in html
    # The plain text is not HTML: the name as the customer wrote it.
    assert '<script>alert("x")</script> & Co' in received.part("plain")


async def test_the_dashboard_event_is_signed_so_the_documented_check_verifies_it(
    session: AsyncSession, clock: FrozenClock, worker: Worker, dashboard: DashboardReceiver
) -> None:
    customer = await _customer(session, dashboard_user_id="7")
    await _payment_failed(session, customer, clock)
    await session.commit()

    await worker.sweep_and_run()

    [request] = dashboard.requests
    header = request.headers["billing-signature"]
    now = clock.now().timestamp()
    assert verify_dashboard_signature(request.body, header, DASHBOARD_SECRET, now)
    assert not verify_dashboard_signature(request.body + b" ", header, DASHBOARD_SECRET, now)
    assert not verify_dashboard_signature(request.body, header, "another-secret", now)
    assert not verify_dashboard_signature(request.body, header, DASHBOARD_SECRET, now + 3600)
    # Stripe's scheme exactly: stripe-python's own verifier accepts it too.
    stripe.WebhookSignature.verify_header(
        request.body.decode(), header, DASHBOARD_SECRET, tolerance=None
    )
    event = json.loads(request.body)
    assert event == {
        "id": "ntf_1",
        "type": "payment_failed",
        "created": int(clock.now().timestamp()),
        "customer": "7",
        "data": event["data"],
    }
    assert event["data"]["amount_due"] == 4_950 and event["data"]["currency"] == "usd"
    assert request.headers["billing-event-id"] == "ntf_1"


async def test_a_receiver_down_for_three_attempts_then_up_gets_everything_once_in_order(
    session: AsyncSession,
    clock: FrozenClock,
    worker: Worker,
    dashboard: DashboardReceiver,
    smtp_server: SmtpReceiver,
) -> None:
    customer = await _customer(session)
    await _payment_failed(session, customer, clock, invoice="in_1")
    await session.commit()
    clock.advance(timedelta(seconds=1))
    await _payment_failed(session, customer, clock, invoice="in_2")
    await session.commit()
    await dashboard.stop()
    counted_before = {
        outcome: _counted("dashboard", outcome) for outcome in ("sent", "retried", "dead")
    }

    for wait in (timedelta(0), timedelta(seconds=30), timedelta(minutes=1)):
        clock.advance(wait)
        await worker.sweep_and_run()
    # Three refused attempts at the first event; the second waits behind it, untried.
    assert await _deliveries(session) == [
        (1, "dashboard", "pending", 3),
        (1, "email", "sent", 1),
        (2, "dashboard", "pending", 0),
        (2, "email", "sent", 1),
    ]
    await dashboard.start()
    clock.advance(timedelta(minutes=1))
    assert await worker.sweep() == 0  # the next retry is not due yet
    clock.advance(timedelta(minutes=1))
    await worker.sweep_and_run()
    clock.advance(timedelta(hours=2))
    await worker.sweep_and_run()
    await worker.deliver(customer.id)

    assert dashboard.event_ids() == ["ntf_1", "ntf_2"]
    counted = {
        outcome: _counted("dashboard", outcome) - counted_before[outcome]
        for outcome in ("sent", "retried", "dead")
    }
    assert counted == {"sent": 2, "retried": 3, "dead": 0}
    assert [email.message["Subject"] for email in smtp_server.received] == [
        "Payment of $49.50 failed"
    ] * 2
    assert await _deliveries(session) == [
        (1, "dashboard", "sent", 4),
        (1, "email", "sent", 1),
        (2, "dashboard", "sent", 1),
        (2, "email", "sent", 1),
    ]


async def test_a_refusal_from_the_dashboard_is_dead_at_once_and_keeps_the_answer(
    session: AsyncSession, clock: FrozenClock, worker: Worker, dashboard: DashboardReceiver
) -> None:
    dashboard.status, dashboard.answer = 400, b'{"error": "unknown customer"}'
    customer = await _customer(session)
    await _payment_failed(session, customer, clock)
    await session.commit()

    await worker.sweep_and_run()
    clock.advance(timedelta(hours=1))
    await worker.sweep_and_run()

    assert len(dashboard.requests) == 1
    delivery = await session.scalar(
        select(NotificationDelivery).where(NotificationDelivery.channel == "dashboard")
    )
    assert delivery is not None and delivery.status == "dead"
    assert delivery.last_response == '400 {"error": "unknown customer"}'
    notification = await session.scalar(select(Notification))
    assert notification is not None and notification.status == "dead"


async def test_a_mailbox_the_smtp_server_refuses_for_good_is_dead_at_once(
    session: AsyncSession, clock: FrozenClock, worker: Worker, smtp_server: SmtpReceiver
) -> None:
    smtp_server.unknown_mailboxes.add("gone@acme.test")
    customer = await _customer(session, email="gone@acme.test")
    await _payment_failed(session, customer, clock)
    await session.commit()

    await worker.sweep_and_run()

    delivery = await session.scalar(
        select(NotificationDelivery).where(NotificationDelivery.channel == "email")
    )
    assert delivery is not None and (delivery.status, delivery.attempts) == ("dead", 1)
    assert delivery.last_error is not None and "No such mailbox" in delivery.last_error
    assert smtp_server.received == []


async def test_a_sender_the_smtp_server_refuses_is_retried_not_dead_and_sent_once_fixed(
    session: AsyncSession,
    clock: FrozenClock,
    worker: Worker,
    smtp_server: SmtpReceiver,
) -> None:
    # A refused From is our settings' fault, not the message's: every email would fail
    # alike, so none is given up on at the first refusal.
    smtp_server.refused_senders.add(worker.settings.EMAIL_FROM)
    customer = await _customer(session, email="ops@acme.test")
    await _payment_failed(session, customer, clock)
    await session.commit()

    await worker.sweep_and_run()
    delivery = await session.scalar(
        select(NotificationDelivery).where(NotificationDelivery.channel == "email")
    )
    assert delivery is not None and (delivery.status, delivery.attempts) == ("pending", 1)
    assert delivery.last_error is not None and "Sender address rejected" in delivery.last_error

    smtp_server.refused_senders.clear()
    clock.advance(timedelta(hours=1))
    await worker.sweep_and_run()
    await session.refresh(delivery)
    assert (delivery.status, delivery.attempts) == ("sent", 2)
    assert [received.recipients for received in smtp_server.received] == [["ops@acme.test"]]


@pytest.mark.parametrize("status", [408, 429, 503])
async def test_timeouts_throttling_and_server_errors_are_retried(
    session: AsyncSession,
    clock: FrozenClock,
    worker: Worker,
    dashboard: DashboardReceiver,
    status: int,
) -> None:
    dashboard.status = status
    customer = await _customer(session)
    await _payment_failed(session, customer, clock)
    await session.commit()

    await worker.sweep_and_run()
    dashboard.status = 200
    clock.advance(timedelta(seconds=30))
    await worker.sweep_and_run()

    assert dashboard.event_ids() == ["ntf_1", "ntf_1"]
    assert (1, "dashboard", "sent", 2) in await _deliveries(session)


async def test_attempts_used_up_is_dead_and_a_resend_delivers_it_under_the_same_event_id(
    session: AsyncSession, clock: FrozenClock, worker: Worker, dashboard: DashboardReceiver
) -> None:
    customer = await _customer(session)
    await _payment_failed(session, customer, clock)
    await session.commit()
    await dashboard.stop()

    for _ in range(5):  # NOTIFICATION_MAX_ATTEMPTS=5
        await worker.sweep_and_run()
        clock.advance(timedelta(hours=1))
    assert (1, "dashboard", "dead", 5) in await _deliveries(session)
    dead = await service.list_notifications(
        session, status="dead", kind=None, customer_id=None, limit=10
    )
    assert [item.notification.id for item in dead] == [1]
    delivery = next(d for d in dead[0].deliveries if d.channel == "dashboard")
    assert delivery.last_error is not None and "ConnectError" in delivery.last_error

    await dashboard.start()
    await service.resend_notification(session, notification_id=1, now=clock.now())
    await session.commit()
    await worker.sweep_and_run()

    assert dashboard.event_ids() == ["ntf_1"]
    assert await _deliveries(session) == [(1, "dashboard", "sent", 1), (1, "email", "sent", 1)]


async def test_a_rolled_back_cause_sends_nothing(
    sessionmaker: async_sessionmaker[AsyncSession],
    session: AsyncSession,
    clock: FrozenClock,
    worker: Worker,
    dashboard: DashboardReceiver,
    smtp_server: SmtpReceiver,
) -> None:
    customer = await _customer(session)
    await session.commit()

    with pytest.raises(RuntimeError):
        async with sessionmaker.begin() as cause:
            await _payment_failed(cause, customer, clock)
            raise RuntimeError("the cause failed after writing its notice")
    assert await worker.sweep() == 0
    await worker.deliver(customer.id)

    assert dashboard.requests == [] and smtp_server.received == []
    assert (await session.scalars(select(Notification))).all() == []


async def test_a_claim_left_by_a_dead_worker_is_sent_again_after_its_lease(
    session: AsyncSession, clock: FrozenClock, worker: Worker, dashboard: DashboardReceiver
) -> None:
    customer = await _customer(session)
    await _payment_failed(session, customer, clock)
    await session.commit()
    # A worker claimed the dashboard delivery and died before recording anything.
    delivery = await session.scalar(
        select(NotificationDelivery).where(NotificationDelivery.channel == "dashboard")
    )
    assert delivery is not None
    delivery.claimed_until, delivery.attempts = clock.now() + timedelta(minutes=5), 1
    await session.commit()

    await worker.sweep_and_run()
    assert dashboard.requests == []
    clock.advance(timedelta(minutes=5))
    await worker.sweep_and_run()

    assert dashboard.event_ids() == ["ntf_1"]
    assert (1, "dashboard", "sent", 2) in await _deliveries(session)


async def test_without_smtp_settings_the_email_is_logged_and_written_as_an_eml_file(
    database_url: str,
    redis_url: str,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    """The `make run` configuration: no SMTP_HOST, no DASHBOARD_WEBHOOK_URL."""
    settings: Settings = make_settings(
        database_url, redis_url, NOTIFICATION_OUTBOX_DIR=str(tmp_path / "outbox")
    )
    dev_worker = Worker(settings, clock, sessionmaker, redis_url)
    customer = await _customer(session)
    await _payment_failed(session, customer, clock)
    await session.commit()

    try:
        await dev_worker.sweep_and_run()
    finally:
        await dev_worker.redis.aclose()

    [eml] = (tmp_path / "outbox").glob("*.eml")
    assert eml.name == "ntf_1-payment_failed.eml"
    assert "Subject: Payment of $49.50 failed" in eml.read_text()
    assert await _deliveries(session) == [(1, "dashboard", "skipped", 1), (1, "email", "sent", 1)]
