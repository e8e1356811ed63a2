"""`make bench`: the service's hot read paths against bare FastAPI endpoints, side by side.

Absolute rates move with the machine's load, so each figure is a ratio: the service's rate
divided by the rate of a bare FastAPI endpoint doing one indexed asyncpg select, measured in
alternating rounds in the same process, against the same PostgreSQL. Later work adds its own
paths (usage ingestion, entitlements, webhooks) to PATHS.
"""

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
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
from tests import infra
from tests.conftest import database_url_for, make_settings

ROUNDS = 5
REQUESTS_PER_ROUND = 400
CONCURRENCY = 8


def bare_app(dsn: str) -> FastAPI:
    """One route, one indexed select on a pool: the floor any real endpoint is held to."""
    state: dict[str, asyncpg.Pool] = {}
    app = FastAPI()

    @app.get("/bare")
    async def bare() -> dict[str, object]:
        async with state["pool"].acquire() as connection:
            row = await connection.fetchrow(
                "SELECT id, name FROM subscription_plans WHERE id = $1", 1
            )
        return {"success": True, "plan": dict(row) if row else None}

    async def startup() -> None:
        state["pool"] = await asyncpg.create_pool(dsn, min_size=2, max_size=10)

    async def shutdown() -> None:
        await state["pool"].close()

    app.router.on_startup.append(startup)
    app.router.on_shutdown.append(shutdown)
    return app


async def rate(client: httpx.AsyncClient, path: str, headers: dict[str, str]) -> float:
    """Requests per second for REQUESTS_PER_ROUND requests at CONCURRENCY."""
    remaining = REQUESTS_PER_ROUND

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            response = await client.get(path, headers=headers)
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return REQUESTS_PER_ROUND / (time.perf_counter() - started)


async def run(database_url: str, redis_url: str) -> None:
    settings = make_settings(database_url, redis_url)
    service = create_app(settings)
    bare = bare_app(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    token = issue_access_token(
        settings, user_id="bench", roles=[], now=SystemClock().now(), lifetime=timedelta(hours=1)
    )
    auth = {"Authorization": f"Bearer {token}"}
    paths: dict[str, tuple[str, dict[str, str]]] = {
        "GET plans/ (public catalog)": ("/subscriptions/api/plans/", {}),
        "GET account/ (JWT + account)": ("/subscriptions/api/account/", auth),
    }
    async with (
        service.router.lifespan_context(service),
        bare.router.lifespan_context(bare),
        httpx.AsyncClient(transport=httpx.ASGITransport(service), base_url="http://s") as s,
        httpx.AsyncClient(transport=httpx.ASGITransport(bare), base_url="http://b") as b,
    ):
        async with service.state.sessionmaker() as session, session.begin():
            await install_default_catalog(session, billing_currency=settings.BILLING_CURRENCY)
        measure: Callable[[httpx.AsyncClient, str, dict[str, str]], Awaitable[float]] = rate
        await measure(s, paths["GET plans/ (public catalog)"][0], {})  # warm-up
        await measure(b, "/bare", {})
        print(f"{'path':34} {'service/bare (median of rounds)':>32}")
        for label, (path, headers) in paths.items():
            ratios = []
            for _ in range(ROUNDS):
                bare_rate = await measure(b, "/bare", {})
                service_rate = await measure(s, path, headers)
                ratios.append(service_rate / bare_rate)
            print(f"{label:34} {statistics.median(ratios):>31.2f}x")


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
