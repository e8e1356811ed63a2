import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from jose import jwt
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.core.clock import FrozenClock
from app.core.config import Settings, get_settings, to_asyncpg_url
from app.core.db import create_engine, create_sessionmaker
from app.core.embedded import create_database, drop_database
from app.core.embedded import database_url as server_database_url
from app.core.migrations import upgrade_to_head
from app.main import create_app
from app.models import Base
from tests import infra

pytest_plugins = ["tests.stripe.plugin", "tests.run_summary"]

TEST_JWT_SECRET = "test-secret-for-the-billing-service-suite-0123456789"
TEST_NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def database_server_url() -> Iterator[str]:
    with ExitStack() as stack, infra.postgres_server_url(stack) as url:
        yield url


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    with ExitStack() as stack, infra.redis_server_url(stack) as url:
        yield url


@pytest.fixture(scope="session")
def database_url(database_server_url: str) -> Iterator[str]:
    """A fresh database for this run, migrated by Alembic, dropped at the end."""
    name = infra.unique_database_name()
    asyncio.run(create_database(database_server_url, name))
    url = database_url_for(database_server_url, name)
    try:
        upgrade_to_head(url)
        yield url
    finally:
        asyncio.run(drop_database(database_server_url, name))


def database_url_for(server_url: str, name: str) -> str:
    return to_asyncpg_url(server_database_url(server_url, name))


@pytest.fixture(scope="session")
def redis_url(redis_server_url: str) -> Iterator[str]:
    url = asyncio.run(infra.claim_redis_database(redis_server_url))
    try:
        yield url
    finally:
        asyncio.run(infra.flush_redis_database(url, release=True))


def make_settings(database_url: str, redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": TEST_JWT_SECRET,
        "STRIPE_SECRET_KEY": "sk_test_123",
        "STRIPE_PUBLISHABLE_KEY": "pk_test_123",
        "STRIPE_WEBHOOK_SECRET": "whsec_test",
        "STRIPE_LIVE_MODE": False,
        # Failures are injected on purpose; stripe-python's retry back-off would only slow them.
        "STRIPE_MAX_NETWORK_RETRIES": 0,
        # Frozen objects are never freed: hundreds of apps start in one test process.
        "TUNE_GARBAGE_COLLECTOR": False,
        **overrides,
    }
    return Settings(_env_file=None, **values)


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return make_settings(database_url, redis_url)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(TEST_NOW)


@pytest_asyncio.fixture(scope="session")
async def engine(database_url: str, redis_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(database_url, redis_url))
    yield engine
    await engine.dispose()


@pytest_asyncio.fixture(autouse=True)
async def _isolate_tests(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Each test starts with empty tables and an empty Redis database."""
    yield
    if "engine" not in request.fixturenames:
        return
    engine: AsyncEngine = request.getfixturevalue("engine")
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await infra.flush_redis_database(request.getfixturevalue("redis_url"), release=False)


@pytest.fixture
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest_asyncio.fixture
async def session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session for arranging and checking data; the test commits what the app must see."""
    async with sessionmaker() as session:
        yield session


@pytest_asyncio.fixture
async def app(
    settings: Settings, clock: FrozenClock, engine: AsyncEngine
) -> AsyncIterator[FastAPI]:
    application = create_app(settings, clock)
    async with application.router.lifespan_context(application):
        yield application


@pytest_asyncio.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


TokenFactory = Callable[..., str]


@pytest.fixture
def make_token(clock: FrozenClock) -> TokenFactory:
    """A token shaped like djangorestframework-simplejwt 5's access tokens."""

    def make(
        user_id: str | int = "42",
        *,
        roles: list[str] | None = None,
        lifetime: timedelta = timedelta(minutes=5),
        key: str = TEST_JWT_SECRET,
        algorithm: str = "HS256",
        **claims: Any,
    ) -> str:
        now = clock.now()
        payload: dict[str, Any] = {
            "token_type": "access",
            "exp": int((now + lifetime).timestamp()),
            "iat": int(now.timestamp()),
            "jti": "4f1c1b2a9d8e4f0a8b7c6d5e4f3a2b1c",
            "user_id": user_id,
        }
        if roles is not None:
            payload["roles"] = roles
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(payload, key, algorithm=algorithm)

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(autouse=True)
def _fresh_settings_cache() -> Iterator[None]:
    # The CLI reads settings through a cache; a test's environment must not leak to the next.
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
