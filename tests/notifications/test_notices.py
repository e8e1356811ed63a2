"""Each notice the seed promises, written by its real trigger (the API, a Stripe webhook, the
usage path, a cron) in the transaction of its cause, and sent to the customer."""

import copy
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.models import Customer, Notification, UsageDailyTotals
from app.notifications.emails import TEMPLATES, EmailRenderer
from app.subscriptions.tasks import remind_trials_ending
from app.usage.tasks import detect_usage_anomalies
from tests.conftest import TokenFactory, bearer, make_settings
from tests.factories import (
    create_customer,
    create_plan,
    create_subscription,
    create_synced_plan,
    subscribe_through_api,
)
from tests.notifications.conftest import Worker
from tests.notifications.receivers import DashboardReceiver, SmtpReceiver
from tests.running_jobs import job_ctx
from tests.stripe.fake import FakeStripe
from tests.usage.helpers import call, post_usage
from tests.webhooks.helpers import deliver, event_at

SUBSCRIBE = "/subscriptions/api/subscribe/"
MANAGE = "/subscriptions/api/manage/"


async def _notices(session: AsyncSession) -> list[tuple[str, dict[str, Any]]]:
    rows = await session.scalars(
        select(Notification).order_by(Notification.id).execution_options(populate_existing=True)
    )
    return [(row.kind, row.payload) for row in rows]


async def _kinds(session: AsyncSession) -> list[str]:
    return [kind for kind, _ in await _notices(session)]


async def test_subscribing_sends_a_welcome_email_and_dashboard_event(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    worker: Worker,
    smtp_server: SmtpReceiver,
    dashboard: DashboardReceiver,
) -> None:
    plan = await create_synced_plan(session, fake_stripe, slug="growth", trial_days=0)
    token = make_token("42", email="owner@acme.test", name="Ada")

    response = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    await worker.sweep_and_run()

    [welcome] = smtp_server.received
    assert welcome.recipients == ["owner@acme.test"]
    assert welcome.message["Subject"] == "Welcome to the Growth plan"
    assert "Hello Ada," in welcome.part("plain")
    assert dashboard.event_ids() == ["ntf_1"]
    assert await _kinds(session) == ["welcome"]


async def test_plan_change_cancellation_and_end_are_each_notified_once(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    starter = await create_synced_plan(session, fake_stripe, slug="starter", trial_days=0)
    pro = await create_synced_plan(
        session, fake_stripe, slug="pro", monthly_price=14_900, trial_days=0
    )
    headers = bearer(make_token("42"))
    subscribed = await client.post(
        SUBSCRIBE,
        json={"plan_id": starter.id, "payment_method_id": "pm_card_visa"},
        headers=headers,
    )
    assert subscribed.status_code == 200, subscribed.text

    for body in (
        {"action": "upgrade", "plan_id": pro.id},
        {"action": "cancel"},
        {"action": "cancel", "at_period_end": False},
    ):
        response = await client.post(MANAGE, json=body, headers=headers)
        assert response.status_code == 200, response.text

    notices = await _notices(session)
    assert [kind for kind, _ in notices] == [
        "welcome",
        "plan_changed",
        "cancellation_scheduled",
        "subscription_ended",
    ]
    changed = dict(notices)["plan_changed"]
    assert (changed["from_plan"], changed["to_plan"]) == ("Starter", "Pro")
    assert dict(notices)["subscription_ended"]["plan_name"] == "Pro"


async def test_a_subscription_deleted_on_stripe_notifies_its_end(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    stored = fake_stripe.subscriptions[stripe_subscription["id"]]
    stored.update(status="canceled", canceled_at=fake_stripe.now, ended_at=fake_stripe.now)
    event = event_at(fake_stripe, "customer.subscription.deleted", stored, fake_stripe.now + 1)

    assert await deliver(client, app, event) == "processed"
    # Stripe delivers it again: nothing new.
    assert await deliver(client, app, copy.deepcopy(event)) == "skipped"

    assert await _kinds(session) == ["welcome", "subscription_ended"]


async def test_one_trial_reminder_when_both_the_event_and_the_cron_fire(
    client: httpx.AsyncClient,
    app: FastAPI,
    make_token: TokenFactory,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
    fake_stripe: FakeStripe,
    worker: Worker,
    smtp_server: SmtpReceiver,
) -> None:
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    await session.execute(update(Customer).values(email="owner@acme.test"))
    await session.commit()
    trial_end = int((clock.now() + timedelta(days=2)).timestamp())
    stored = fake_stripe.subscriptions[stripe_subscription["id"]]
    stored.update(status="trialing", trial_end=trial_end)
    updated = event_at(fake_stripe, "customer.subscription.updated", stored, fake_stripe.now + 1)
    assert await deliver(client, app, updated) == "processed"
    ctx = job_ctx(settings=settings, clock=clock, sessionmaker=sessionmaker)

    # The cron first (the event is late), then Stripe's event, then the cron again.
    assert await remind_trials_ending(ctx) == 1
    event = event_at(
        fake_stripe, "customer.subscription.trial_will_end", stored, fake_stripe.now + 2
    )
    assert await deliver(client, app, event) == "processed"
    assert await remind_trials_ending(ctx) == 0
    await worker.sweep_and_run()

    notices = await _notices(session)
    assert [kind for kind, _ in notices] == ["welcome", "trial_will_end"]
    assert (
        dict(notices)["trial_will_end"]["trial_end"]
        == datetime.fromtimestamp(trial_end, UTC).isoformat()
    )
    ends = datetime.fromtimestamp(trial_end, UTC).strftime("%B %-d, %Y")
    assert [email.message["Subject"] for email in smtp_server.received] == [
        "Welcome to the Growth plan",
        f"Your trial ends on {ends}",
    ]


async def test_usage_thresholds_and_the_first_overage_are_notified_once_each(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    customer = await create_customer(session, dashboard_user_id="42", email="a@acme.test")
    plan = await create_plan(session, included_minutes=100, max_agents=4)
    await create_subscription(session, customer=customer, plan=plan)
    await session.commit()
    user = make_token("42")

    await post_usage(client, user, call("a", 85))
    await post_usage(client, user, agents_active=5)
    await post_usage(client, user, call("b", 20))
    await post_usage(client, user, call("c", 20))  # more overage: no second notice

    notices = await _notices(session)
    assert [(kind, payload["resource"], payload["threshold"]) for kind, payload in notices] == [
        ("usage_threshold", "minutes", 80),
        ("usage_threshold", "agents", 80),
        ("usage_threshold", "agents", 100),
        ("overage_started", "", 0),
        ("usage_threshold", "minutes", 100),
    ]
    assert "80% of this period's 100 included call minutes" in notices[0][1]["message"]


async def test_an_anomalous_day_is_notified(
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: FrozenClock,
) -> None:
    today = clock.now().date()
    customer = await create_customer(session, dashboard_user_id="42")
    started = datetime.combine(today, datetime.min.time(), UTC) - timedelta(days=60)
    subscription = await create_subscription(session, customer=customer, created_at=started)
    days: dict[date, str] = {today - timedelta(days=n): "20" for n in range(1, 15)}
    for day, minutes in {**days, today: "61"}.items():
        session.add(
            UsageDailyTotals(
                subscription_id=subscription.id, day=day, minutes_used=Decimal(minutes)
            )
        )
    await session.commit()

    ctx = job_ctx(settings=settings, clock=clock, sessionmaker=sessionmaker)
    assert await detect_usage_anomalies(ctx) == 1
    assert await detect_usage_anomalies(ctx) == 0

    [(kind, payload)] = await _notices(session)
    assert kind == "usage_anomaly"
    assert payload["day"].startswith(today.isoformat())


def test_every_kind_the_service_writes_has_its_own_template() -> None:
    kinds = {
        "welcome",
        "trial_will_end",
        "usage_threshold",
        "overage_started",
        "usage_anomaly",
        "plan_changed",
        "cancellation_scheduled",
        "subscription_ended",
        "payment_failed",
        "payment_retry_failed",
        "payment_action_required",
        "payment_recovered",
        "payment_overdue_suspended",
        "canceled_for_nonpayment",
    }
    templates = {path.stem for path in TEMPLATES.glob("*.j2") if not path.stem.startswith("_")}
    assert kinds == templates
    renderer = EmailRenderer(locale="en_US")
    for kind in kinds:
        rendered = renderer.render(kind=kind, data={}, customer_name=None)
        assert rendered.subject and "Hello there," in rendered.text


async def test_under_the_dev_configuration_subscribing_writes_a_welcome_eml(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    sessionmaker: async_sessionmaker[AsyncSession],
    database_url: str,
    redis_url: str,
    clock: FrozenClock,
    fake_stripe: FakeStripe,
    tmp_path: Path,
) -> None:
    """`make run`'s settings: no SMTP server, no dashboard URL; the outbox directory is the
    one setting changed (from .data/outbox to a temporary one)."""
    plan = await create_synced_plan(session, fake_stripe, slug="starter", trial_days=0)
    response = await client.post(
        SUBSCRIBE,
        json={"plan_id": plan.id, "payment_method_id": "pm_card_visa"},
        headers=bearer(make_token("77", email="newcomer@example.test")),
    )
    assert response.status_code == 200, response.text
    dev = Worker(
        make_settings(database_url, redis_url, NOTIFICATION_OUTBOX_DIR=str(tmp_path / "outbox")),
        clock,
        sessionmaker,
        redis_url,
    )
    try:
        await dev.sweep_and_run()
    finally:
        await dev.redis.aclose()

    [eml] = (tmp_path / "outbox").glob("*.eml")
    assert eml.name == "ntf_1-welcome.eml"
    message = eml.read_text()
    assert "Subject: Welcome to the Starter plan" in message
    assert "To: newcomer@example.test" in message
