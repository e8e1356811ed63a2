"""An operator at the console in a real browser: sign in with a token, replay a failed
webhook event, resend a dead notification; a token without the role is turned away. Nothing
is loaded from outside."""

from datetime import timedelta
from pathlib import Path

import httpx
from playwright.async_api import Browser
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.console import service as console_service
from app.core.clock import FrozenClock
from app.models import Notification, NotificationDelivery, StripeEvent
from app.notifications import service as notifications_service
from tests.browser.conftest import OfflinePage
from tests.conftest import TokenFactory
from tests.factories import subscribe_through_api
from tests.stripe.fake import FakeStripe
from tests.webhooks.helpers import event_at, local_subscription, post_event


async def _failed_subscription_update(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
) -> str:
    """A `customer.subscription.updated` (to past_due) stored and given up on: failed."""
    stripe_subscription = await subscribe_through_api(client, make_token, session, fake_stripe)
    stripe_subscription["status"] = "past_due"
    event = event_at(
        fake_stripe, "customer.subscription.updated", stripe_subscription, fake_stripe.now + 5
    )
    assert (await post_event(client, event)).status_code == 200
    await session.execute(
        update(StripeEvent)
        .where(StripeEvent.stripe_event_id == event["id"])
        .values(status="failed", attempts=6, last_error="RuntimeError: the database was down")
    )
    await session.commit()
    event_id: str = event["id"]
    return event_id


async def _dead_notification(session: AsyncSession, clock: FrozenClock) -> int:
    """A payment notice whose dashboard delivery gave up: dead."""
    subscription = await local_subscription(session)
    await notifications_service.notify(
        session,
        customer_id=subscription.customer_id,
        kind="payment_failed",
        dedupe_key="payment_failed:console-test",
        payload={"subscription_id": subscription.id},
        now=clock.now(),
    )
    notification_id = (
        await session.execute(
            select(Notification.id).where(Notification.dedupe_key == "payment_failed:console-test")
        )
    ).scalar_one()
    await session.execute(
        update(Notification).where(Notification.id == notification_id).values(status="dead")
    )
    await session.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.notification_id == notification_id)
        .values(status="dead", attempts=10, last_response="400 unknown customer")
    )
    await session.commit()
    return notification_id


async def test_an_operator_signs_in_replays_a_failed_webhook_event_and_resends_a_dead_notification(
    live_server: str,
    offline_page: OfflinePage,
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    fake_stripe: FakeStripe,
    screenshot_dir: Path,
    clock: FrozenClock,
) -> None:
    event_id = await _failed_subscription_update(client, make_token, session, fake_stripe)
    page = offline_page.page

    # Without a session the console sends the operator to its sign-in.
    await page.goto(f"{live_server}/admin/")
    assert page.url == f"{live_server}/admin/login"
    await page.fill("#token", make_token("7", roles=["billing_admin"]))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{live_server}/admin/")

    # The failed events, then the one to replay.
    await page.get_by_role("link", name="Webhook events").click()
    await page.get_by_role("link", name="failed", exact=True).click()
    await page.locator("a[href*='/admin/stripe-event/details/']").first.click()
    await page.get_by_text(event_id).first.wait_for()
    await page.get_by_role("link", name="Replay").click()
    await page.get_by_role("button", name="Replay").click()

    await page.get_by_text(f"{event_id} replayed: processed").wait_for()
    await page.screenshot(path=str(screenshot_dir / "console-replayed.png"))
    assert (await local_subscription(session)).status == "past_due"

    # A dead notification, sent again from Notifications.
    notification_id = await _dead_notification(session, clock)
    await page.get_by_role("link", name="Notifications").click()
    await page.locator(f"a[href$='/admin/notification/details/{notification_id}']").first.click()
    await page.get_by_role("link", name="Resend").click()
    await page.get_by_role("button", name="Resend").click()
    await page.get_by_text(f"notification {notification_id} queued to be sent again").wait_for()
    session.expire_all()
    resent = await session.get(Notification, notification_id)
    assert resent is not None and resent.status == "pending"

    # The audit trail shows who did what.
    await page.get_by_role("link", name="Console audit").click()
    audit = await page.locator("table").inner_text()
    assert "webhook_event.replay" in audit and "console.sign_in" in audit
    assert offline_page.blocked == []


async def test_a_token_without_billing_admin_is_refused_at_sign_in(
    live_server: str, offline_page: OfflinePage, make_token: TokenFactory, screenshot_dir: Path
) -> None:
    page = offline_page.page
    await page.goto(f"{live_server}/admin/login")
    await page.fill("#token", make_token("8", roles=["service"]))
    await page.get_by_role("button", name="Sign in").click()

    assert "has no `billing_admin` role" in await page.locator("#sign-in-error").inner_text()
    await page.screenshot(path=str(screenshot_dir / "console-refused.png"))
    await page.goto(f"{live_server}/admin/stripe-event/list")
    assert page.url == f"{live_server}/admin/login"
    assert offline_page.blocked == []


async def test_a_one_time_link_signs_in_in_the_browser_once(
    live_server: str,
    offline_page: OfflinePage,
    browser: Browser,
    sessionmaker: async_sessionmaker[AsyncSession],
    clock: FrozenClock,
) -> None:
    async with sessionmaker.begin() as session:
        secret = await console_service.create_sign_in_link(
            session, user_id="12", now=clock.now(), lifetime=timedelta(minutes=10)
        )
    link = f"{live_server}/admin/link#{secret}"
    page = offline_page.page

    await page.goto(link)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{live_server}/admin/")
    assert await page.get_by_role("link", name="Webhook events").count() == 1

    # The same link in another browser: spent.
    context = await browser.new_context()
    try:
        other = await context.new_page()
        await other.goto(link)
        await other.get_by_role("button", name="Sign in").click()
        assert "used already or expired" in await other.locator("#sign-in-error").inner_text()
    finally:
        await context.close()
