"""The operators' routes (GET admin/notifications/, POST admin/notifications/{id}/resend/)
and `billing notifications`."""

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.models import Notification, NotificationDelivery
from app.notifications import service
from tests.cli.conftest import invoke
from tests.conftest import TokenFactory, bearer
from tests.factories import create_customer

NOTIFICATIONS = "/subscriptions/api/admin/notifications/"


async def _notices(session: AsyncSession, clock: FrozenClock) -> tuple[int, int]:
    first = await create_customer(session, dashboard_user_id="1")
    second = await create_customer(session, dashboard_user_id="2")
    for customer, kind in ((first, "welcome"), (first, "payment_failed"), (second, "welcome")):
        await service.notify(
            session,
            customer_id=customer.id,
            kind=kind,
            dedupe_key=f"{kind}:{customer.id}",
            payload={"subscription_id": 1},
            now=clock.now(),
        )
    # The payment notice's dashboard delivery gave up.
    await session.execute(update(Notification).where(Notification.id == 2).values(status="dead"))
    await session.execute(
        update(NotificationDelivery)
        .where(
            NotificationDelivery.notification_id == 2, NotificationDelivery.channel == "dashboard"
        )
        .values(status="dead", attempts=10, last_response="400 unknown customer")
    )
    await session.commit()
    return first.id, second.id


async def test_operators_list_notifications_by_status_type_and_customer(
    client: httpx.AsyncClient, session: AsyncSession, clock: FrozenClock, make_token: TokenFactory
) -> None:
    first, second = await _notices(session, clock)
    admin = bearer(make_token("9001", roles=["billing_admin"]))

    dead = (await client.get(NOTIFICATIONS, params={"status": "dead"}, headers=admin)).json()
    [notice] = dead["notifications"]
    assert (notice["id"], notice["event_id"], notice["kind"]) == (2, "ntf_2", "payment_failed")
    by_channel = {d["channel"]: d for d in notice["deliveries"]}
    assert by_channel["dashboard"]["status"] == "dead"
    assert by_channel["dashboard"]["last_response"] == "400 unknown customer"
    assert by_channel["email"]["status"] == "pending"

    welcomes = await client.get(NOTIFICATIONS, params={"type": "welcome"}, headers=admin)
    assert [n["customer_id"] for n in welcomes.json()["notifications"]] == [second, first]
    mine = await client.get(NOTIFICATIONS, params={"customer": first, "limit": 1}, headers=admin)
    assert [n["id"] for n in mine.json()["notifications"]] == [2]
    assert mine.json()["next_cursor"] == "2"
    older = await client.get(NOTIFICATIONS, params={"customer": first, "cursor": 2}, headers=admin)
    assert [n["id"] for n in older.json()["notifications"]] == [1]


async def test_resend_reopens_a_dead_notification_and_refuses_any_other(
    client: httpx.AsyncClient, session: AsyncSession, clock: FrozenClock, make_token: TokenFactory
) -> None:
    await _notices(session, clock)
    admin = bearer(make_token("9001", roles=["billing_admin"]))

    resent = await client.post(f"{NOTIFICATIONS}2/resend/", headers=admin)
    assert resent.status_code == 200, resent.text
    notice = resent.json()["notification"]
    assert notice["status"] == "pending"
    dashboard = next(d for d in notice["deliveries"] if d["channel"] == "dashboard")
    assert (dashboard["status"], dashboard["attempts"]) == ("pending", 0)

    again = await client.post(f"{NOTIFICATIONS}2/resend/", headers=admin)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "notification_not_dead")
    missing = await client.post(f"{NOTIFICATIONS}99/resend/", headers=admin)
    assert (missing.status_code, missing.json()["error"]["code"]) == (
        404,
        "notification_not_found",
    )


async def test_only_billing_admins_see_or_resend_notifications(
    client: httpx.AsyncClient, session: AsyncSession, clock: FrozenClock, make_token: TokenFactory
) -> None:
    await _notices(session, clock)
    user = bearer(make_token("1"))

    assert (await client.get(NOTIFICATIONS, headers=user)).status_code == 403
    assert (await client.post(f"{NOTIFICATIONS}2/resend/", headers=user)).status_code == 403
    assert (await client.get(NOTIFICATIONS)).status_code == 401


async def test_the_command_lists_the_dead_and_resends_one(
    session: AsyncSession,
    clock: FrozenClock,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _notices(session, clock)
    assert settings.JWT_SECRET is not None
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("JWT_SECRET", settings.JWT_SECRET.get_secret_value())

    listed = await invoke("notifications", "--dead")
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split()[:4] == ["id", "customer", "kind", "status"]
    assert row.split()[:4] == ["2", "1", "payment_failed", "dead"]
    assert "dead(10)" in row

    resent = await invoke("notifications", "--resend", "2")
    assert resent.exit_code == 0, resent.output
    assert (await invoke("notifications", "--dead")).output.strip() == "No notification matches."
    refused = await invoke("notifications", "--resend", "2")
    assert refused.exit_code == 1
    assert "notification_not_dead" in refused.output
