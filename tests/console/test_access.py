"""Who gets into the operator console, how, and for how long; forged posts are refused."""

from datetime import timedelta

import httpx
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.clock import FrozenClock
from app.core.config import Settings
from app.main import create_app
from app.models import ConsoleAuditEntry, OperatorAlert
from tests.cli.conftest import invoke
from tests.conftest import TokenFactory, make_settings
from tests.console.helpers import csrf_of, post_form, sign_in

ADMIN = ["billing_admin"]


async def _alert(session: AsyncSession, clock: FrozenClock) -> OperatorAlert:
    alert = OperatorAlert(
        kind="stripe_drift",
        severity="high",
        message="3 differences",
        details={},
        dedupe_key="stripe_drift:test",
        created_at=clock.now(),
    )
    session.add(alert)
    await session.commit()
    return alert


async def _audit(session: AsyncSession) -> list[tuple[str, str, str, str]]:
    rows = await session.scalars(select(ConsoleAuditEntry).order_by(ConsoleAuditEntry.id))
    return [(row.actor_user_id, row.action, row.target, row.outcome) for row in rows]


async def test_the_console_without_a_session_redirects_to_its_sign_in(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/admin/", "/admin/stripe-event/list", "/admin/operator-alert/details/1"):
        response = await client.get(path)
        assert response.status_code == 302
        assert response.headers["location"] == "http://testserver/admin/login"
    assert (await client.get("/admin")).headers["location"] == "/admin/"


async def test_an_admin_token_signs_in_once_and_the_cookie_carries_the_session(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    response = await sign_in(client, make_token("7", roles=ADMIN))

    assert response.status_code == 302
    assert response.headers["location"] == "http://testserver/admin/"
    cookie = response.headers["set-cookie"]
    assert "billing_console=" in cookie
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert "path=/admin;" in cookie.lower() and "max-age=1800" in cookie.lower()
    assert "secure" not in cookie.lower()  # not in production: local http works
    home = await client.get("/admin/")
    assert home.status_code == 200
    assert "Webhook events" in home.text
    assert await _audit(session) == [("7", "console.sign_in", "console", "done")]


async def test_a_token_without_billing_admin_cannot_sign_in(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    response = await sign_in(client, make_token("7", roles=["service"]))

    assert response.status_code == 403
    assert "has no `billing_admin` role" in response.text
    assert (await client.get("/admin/")).status_code == 302


async def test_an_invalid_or_expired_token_cannot_sign_in(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    forged = make_token("7", roles=ADMIN, key="not-the-service-secret-0123456789abcdef")
    expired = make_token("7", roles=ADMIN, lifetime=timedelta(minutes=-5))
    for token in (forged, expired, ""):
        response = await sign_in(client, token)
        assert response.status_code in (400, 401)
        assert (await client.get("/admin/")).status_code == 302


async def test_the_session_ends_console_session_minutes_after_sign_in(
    client: httpx.AsyncClient, make_token: TokenFactory, clock: FrozenClock
) -> None:
    await sign_in(client, make_token("7", roles=ADMIN))
    clock.advance(timedelta(minutes=29))
    assert (await client.get("/admin/")).status_code == 200
    clock.advance(timedelta(minutes=1))
    assert (await client.get("/admin/")).status_code == 302


async def test_signing_out_ends_the_session_and_is_audited(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    await sign_in(client, make_token("7", roles=ADMIN))

    response = await client.get("/admin/logout")

    assert response.status_code == 302
    assert (await client.get("/admin/")).status_code == 302
    assert await _audit(session) == [
        ("7", "console.sign_in", "console", "done"),
        ("7", "console.sign_out", "console", "done"),
    ]
    # Signing out again, with no session, records nothing more.
    await client.get("/admin/logout")
    assert len(await _audit(session)) == 2


async def test_a_forged_form_post_without_the_csrf_token_is_refused(
    client: httpx.AsyncClient,
    make_token: TokenFactory,
    session: AsyncSession,
    clock: FrozenClock,
) -> None:
    alert = await _alert(session, clock)
    await sign_in(client, make_token("7", roles=ADMIN))
    action = "/admin/operator-alert/acknowledge"

    forged = await client.post(action, data={"pks": str(alert.id)})
    wrong = await client.post(action, data={"pks": str(alert.id), "csrf_token": "guessed"})

    assert forged.status_code == 403 and wrong.status_code == 403
    await session.refresh(alert)
    assert alert.acknowledged_at is None
    confirmed = await post_form(
        client,
        f"/admin/operator-alert/action/acknowledge?pks={alert.id}",
        action,
        {"pks": str(alert.id)},
    )
    assert confirmed.status_code == 303
    await session.refresh(alert)
    assert alert.acknowledged_at == clock.now()
    assert (await _audit(session))[-1] == (
        "7",
        "operator_alert.acknowledge",
        f"operator-alert:{alert.id}",
        "done",
    )


async def test_the_sign_in_form_itself_needs_its_csrf_token(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    response = await client.post("/admin/login", data={"token": make_token("7", roles=ADMIN)})
    assert response.status_code == 403
    assert (await client.get("/admin/")).status_code == 302


@pytest_asyncio.fixture
async def strict_app(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> FastAPI:
    settings = make_settings(
        database_url, redis_url, RATE_LIMIT_CONSOLE_SIGN_IN_PER_IP_PER_MINUTE=2
    )
    return create_app(settings, clock)


async def test_sign_ins_are_rate_limited_per_client_ip(
    strict_app: FastAPI, make_token: TokenFactory
) -> None:
    async with strict_app.router.lifespan_context(strict_app):
        transport = httpx.ASGITransport(app=strict_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            statuses = [(await sign_in(client, "not-a-token")).status_code for _ in range(2)]
            limited = await sign_in(client, make_token("7", roles=ADMIN))
    assert statuses == [401, 401]
    assert limited.status_code == 429
    assert "Too many requests" in limited.text


async def test_a_one_time_link_signs_in_once(
    app: FastAPI,
    client: httpx.AsyncClient,
    environment: Settings,
    session: AsyncSession,
) -> None:
    result = await invoke("console-link", "--user-id", "12")
    assert result.exit_code == 0, result.output
    link = result.stdout.strip().splitlines()[0]
    assert link.startswith("http://127.0.0.1:8000/admin/link#")
    path, secret = link.removeprefix("http://127.0.0.1:8000").split("#")

    page = await client.get(path)  # a link previewer's GET spends nothing
    used = await client.post(path, data={"secret": secret, "csrf_token": csrf_of(page)})
    assert used.status_code == 303
    assert (await client.get("/admin/")).status_code == 200

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as other:
        page = await other.get(path)
        again = await other.post(path, data={"secret": secret, "csrf_token": csrf_of(page)})
        assert again.status_code == 403
        assert "used already or expired" in again.text
        assert (await other.get("/admin/")).status_code == 302
    assert await _audit(session) == [("12", "console.sign_in", "console", "done")]


async def test_an_expired_link_does_not_sign_in(
    client: httpx.AsyncClient, environment: Settings, clock: FrozenClock
) -> None:
    result = await invoke("console-link", "--user-id", "12")
    secret = result.stdout.strip().splitlines()[0].rsplit("#", 1)[1]
    # The command stamps the link with the wall clock; the app's clock is frozen in 2026-11.
    clock.advance(timedelta(days=3650))
    page = await client.get("/admin/link")
    response = await client.post(
        "/admin/link", data={"secret": secret, "csrf_token": csrf_of(page)}
    )
    assert response.status_code == 403


async def _production_client(
    database_url: str, redis_url: str, clock: FrozenClock, **overrides: str
) -> tuple[FastAPI, httpx.AsyncClient]:
    settings = make_settings(database_url, redis_url, ENVIRONMENT="production", **overrides)
    application = create_app(settings, clock)
    transport = httpx.ASGITransport(app=application)
    return application, httpx.AsyncClient(transport=transport, base_url="https://billing.test")


async def test_in_production_the_cookie_is_secure_and_a_missing_secret_unmounts_the_console(
    database_url: str,
    redis_url: str,
    clock: FrozenClock,
    engine: AsyncEngine,
    make_token: TokenFactory,
) -> None:
    application, client = await _production_client(
        database_url, redis_url, clock, CONSOLE_SESSION_SECRET="k" * 48
    )
    async with application.router.lifespan_context(application), client:
        response = await sign_in(client, make_token("7", roles=ADMIN))
        assert response.status_code == 302
        assert "; secure" in response.headers["set-cookie"].lower()

    application, client = await _production_client(database_url, redis_url, clock)
    async with application.router.lifespan_context(application), client:
        assert (await client.get("/admin/login")).status_code == 404
