"""What every route shares: the error envelope, body limits, CORS, probes."""

import re
from collections.abc import AsyncIterator

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.core.clock import FrozenClock
from app.main import create_app
from app.models import SubscriptionPlan
from tests.conftest import TokenFactory, bearer, make_settings


async def test_unknown_route_is_404_in_the_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/subscriptions/api/no-such-thing/")

    assert response.status_code == 404
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == "not_found"


async def test_body_over_one_megabyte_is_413_and_writes_nothing(
    client: httpx.AsyncClient, make_token: TokenFactory, session: AsyncSession
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))
    body = b'{"slug": "big", "description": "' + b"x" * (1024 * 1024) + b'"}'

    response = await client.post(
        "/subscriptions/api/admin/plans/",
        content=body,
        headers={**admin, "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert await session.scalar(select(func.count()).select_from(SubscriptionPlan)) == 0


async def test_an_unexpected_error_is_a_bare_500_readable_by_the_dashboard(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> None:
    settings = make_settings(
        database_url, redis_url, CORS_ALLOWED_ORIGINS=["https://dashboard.acme.test"]
    )
    app = create_app(settings, clock)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await client.get("/boom", headers={"Origin": "https://dashboard.acme.test"})

    assert response.status_code == 500
    assert response.json() == {
        "success": False,
        "error": {
            "code": "internal_error",
            "message": "An unexpected error occurred.",
            "details": None,
        },
    }
    assert "hunter2" not in response.text and "Traceback" not in response.text
    assert response.headers["access-control-allow-origin"] == "https://dashboard.acme.test"


async def test_no_origin_is_allowed_by_default(client: httpx.AsyncClient) -> None:
    response = await client.options(
        "/subscriptions/api/plans/",
        headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in response.headers


async def test_configured_dashboard_origin_may_call_with_a_bearer_token(
    database_url: str, redis_url: str, clock: FrozenClock, engine: AsyncEngine
) -> None:
    settings = make_settings(
        database_url, redis_url, CORS_ALLOWED_ORIGINS=["https://dashboard.acme.test"]
    )
    app = create_app(settings, clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        preflight = await client.options(
            "/subscriptions/api/subscribe/",
            headers={
                "Origin": "https://dashboard.acme.test",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        other = await client.get(
            "/subscriptions/api/plans/", headers={"Origin": "https://evil.test"}
        )

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://dashboard.acme.test"
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers


async def test_probes_report_the_stores(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True and ready.json()["redis"] is True


async def test_readiness_is_503_when_redis_does_not_answer(
    database_url: str, clock: FrozenClock, engine: AsyncEngine
) -> None:
    settings = make_settings(database_url, "redis://127.0.0.1:1/0")
    app = create_app(settings, clock)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        ready = await client.get("/readyz")
        plans = await client.get("/subscriptions/api/plans/")

    assert ready.status_code == 503
    assert ready.json()["database"] is True and ready.json()["redis"] is False
    assert plans.status_code == 200  # what needs only the database still answers


async def test_openapi_documents_the_routes_once(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/subscriptions/api/plans/" in schema["paths"]
    assert "/subscriptions/api/plans" not in schema["paths"]
    assert (await client.get("/docs")).status_code == 200


async def test_every_documented_path_answers_the_same_without_its_trailing_slash(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    answers = {}
    for template, operations in schema["paths"].items():
        path = re.sub(r"{[^}]+}", "1", template)
        for method in operations:
            with_slash = await client.request(method, path)
            without = await client.request(method, path.rstrip("/"))
            answers[f"{method.upper()} {template}"] = (with_slash.status_code, without.status_code)

    assert {route: pair for route, pair in answers.items() if pair[0] != pair[1]} == {}


async def test_streamed_body_over_the_limit_is_413_too(
    client: httpx.AsyncClient, make_token: TokenFactory
) -> None:
    admin = bearer(make_token(roles=["billing_admin"]))

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"description": "'
        for _ in range(17):
            yield b"x" * 65536
        yield b'"}'

    response = await client.post(
        "/subscriptions/api/admin/plans/",
        content=chunks(),
        headers={**admin, "Content-Type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
