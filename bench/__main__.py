"""`make bench`: the service's hot paths against bare FastAPI endpoints, side by side.

Absolute rates move with the machine's load, so each HTTP figure is a ratio: the service's
rate divided by the rate of a bare FastAPI endpoint doing one asyncpg statement (an indexed
select for reads, an insert for writes), measured in alternating rounds in the same process
against the same PostgreSQL. The worker's figure is events processed per second, in process,
with Stripe not called (fresh payloads need no fetch).
"""

import asyncio
import itertools
import json
import statistics
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from datetime import timedelta

import asyncpg
import httpx
from fastapi import FastAPI

from app.core.auth import issue_access_token
from app.core.clock import SystemClock
from app.core.embedded import create_database, drop_database
from app.core.migrations import upgrade_to_head
from app.main import create_app
from app.plans.default_catalog import install_default_catalog
from app.stripe_gateway.client import PINNED_API_VERSION
from app.webhooks.processing import process_event
from app.webhooks.samples import signature_header
from tests import infra
from tests.conftest import database_url_for, make_settings

ROUNDS = 5
REQUESTS_PER_ROUND = 400
CONCURRENCY = 8
WORKER_EVENTS = 300
WEBHOOK_SECRET = "whsec_bench"  # noqa: S105 (a test secret)

RequestFactory = Callable[[], tuple[str, str, bytes | None, dict[str, str]]]


def bare_app(dsn: str) -> FastAPI:
    """The floor any real endpoint is held to: one statement on a pool."""
    state: dict[str, asyncpg.Pool] = {}
    app = FastAPI()

    @app.get("/bare-select")
    async def bare_select() -> dict[str, object]:
        async with state["pool"].acquire() as connection:
            row = await connection.fetchrow(
                "SELECT id, name FROM subscription_plans WHERE id = $1", 1
            )
        return {"success": True, "plan": dict(row) if row else None}

    @app.post("/bare-insert")
    async def bare_insert() -> dict[str, object]:
        async with state["pool"].acquire() as connection:
            await connection.execute(
                "INSERT INTO bench_bare_rows (token) VALUES ($1)", uuid.uuid4().hex
            )
        return {"success": True}

    async def startup() -> None:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=2, max_size=10)
        async with state["pool"].acquire() as connection:
            await connection.execute(
                "CREATE TABLE IF NOT EXISTS bench_bare_rows (id bigserial primary key, token text)"
            )

    async def shutdown() -> None:
        await state["pool"].close()

    app.router.on_startup.append(startup)
    app.router.on_shutdown.append(shutdown)
    return app


async def rate(client: httpx.AsyncClient, make_request: RequestFactory) -> float:
    """Requests per second for REQUESTS_PER_ROUND requests at CONCURRENCY."""
    remaining = REQUESTS_PER_ROUND

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            method, path, body, headers = make_request()
            response = await client.request(method, path, content=body, headers=headers)
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return REQUESTS_PER_ROUND / (time.perf_counter() - started)


def signed_webhook() -> tuple[str, str, bytes | None, dict[str, str]]:
    now = int(time.time())
    event = {
        "id": f"evt_bench_{uuid.uuid4().hex}",
        "object": "event",
        "type": "customer.deleted",
        "api_version": PINNED_API_VERSION,
        "created": now,
        "livemode": False,
        "data": {"object": {"id": f"cus_bench_{uuid.uuid4().hex[:12]}", "object": "customer"}},
    }
    body = json.dumps(event).encode()
    return (
        "POST",
        "/subscriptions/api/stripe-webhook/",
        body,
        {"Stripe-Signature": signature_header(body, WEBHOOK_SECRET, now)},
    )


async def worker_events_per_second(service: FastAPI) -> float:
    async with service.state.sessionmaker() as session:
        pending = (
            (
                await session.execute(
                    __import__("sqlalchemy").text(
                        "SELECT stripe_event_id FROM stripe_events WHERE status = 'pending' "
                        "ORDER BY id LIMIT :limit"
                    ),
                    {"limit": WORKER_EVENTS},
                )
            )
            .scalars()
            .all()
        )
    started = time.perf_counter()
    for event_id in pending:
        await process_event(
            sessionmaker=service.state.sessionmaker,
            gateway=service.state.stripe_gateway,
            clock=service.state.clock,
            stripe_event_id=event_id,
            max_attempts=3,
        )
    return len(pending) / (time.perf_counter() - started)


async def run(database_url: str, redis_url: str) -> None:
    settings = make_settings(
        database_url, redis_url, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, LOG_LEVEL="WARNING"
    )
    service = create_app(settings)
    bare = bare_app(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    token = issue_access_token(
        settings, user_id="bench", roles=[], now=SystemClock().now(), lifetime=timedelta(hours=1)
    )
    auth = {"Authorization": f"Bearer {token}"}
    bare_select: RequestFactory = lambda: ("GET", "/bare-select", None, {})  # noqa: E731
    bare_insert: RequestFactory = lambda: ("POST", "/bare-insert", None, {})  # noqa: E731
    paths: list[tuple[str, RequestFactory, RequestFactory]] = [
        (
            "GET plans/ (public catalog)",
            lambda: ("GET", "/subscriptions/api/plans/", None, {}),
            bare_select,
        ),
        (
            "GET account/ (JWT + account)",
            lambda: ("GET", "/subscriptions/api/account/", None, auth),
            bare_select,
        ),
        ("POST stripe-webhook/ (verify, store)", signed_webhook, bare_insert),
    ]
    async with (
        service.router.lifespan_context(service),
        bare.router.lifespan_context(bare),
        httpx.AsyncClient(transport=httpx.ASGITransport(service), base_url="http://s") as s,
        httpx.AsyncClient(transport=httpx.ASGITransport(bare), base_url="http://b") as b,
    ):
        async with service.state.sessionmaker() as session, session.begin():
            await install_default_catalog(session, billing_currency=settings.BILLING_CURRENCY)
        await rate(s, paths[0][1])  # warm-up
        await rate(b, bare_select)
        print(f"{'path':40} {'against':12} {'service/bare (median)':>22}")
        for (label, service_request, bare_request), _ in zip(
            paths, itertools.count(), strict=False
        ):
            ratios = []
            for _ in range(ROUNDS):
                bare_rate = await rate(b, bare_request)
                service_rate = await rate(s, service_request)
                ratios.append(service_rate / bare_rate)
            against = "bare insert" if bare_request is bare_insert else "bare select"
            print(f"{label:40} {against:12} {statistics.median(ratios):>21.2f}x")
        per_second = await worker_events_per_second(service)
        print(f"{'worker: stored events processed':40} {'':12} {per_second:>17.0f} /s")


def main() -> None:
    with ExitStack() as stack:
        server_url = stack.enter_context(infra.postgres_server_url(stack))
        redis_server = stack.enter_context(infra.redis_server_url(stack))
        name = infra.unique_database_name()
        asyncio.run(create_database(server_url, name))
        try:
            database_url = database_url_for(server_url, name)
            upgrade_to_head(database_url)
            redis_url = asyncio.run(infra.claim_redis_database(redis_server))
            try:
                asyncio.run(run(database_url, redis_url))
            finally:
                asyncio.run(infra.flush_redis_database(redis_url, release=True))
        finally:
            asyncio.run(drop_database(server_url, name))


if __name__ == "__main__":
    main()
