"""Where the test run's PostgreSQL and Redis come from.

In order: TEST_DATABASE_URL / TEST_REDIS_URL; else the servers answering at the default ports
(as on CI machines); else embedded servers started for this run. A missing server never skips
a test. Each run gets its own database (created, then dropped) and its own Redis database
number, so two runs on one machine never see each other's data.
"""

import asyncio
import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import asyncpg
from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.core.embedded import EmbeddedPostgres, EmbeddedRedis

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
REDIS_CLAIM_KEY = "billing-tests:claimed-by"


async def _postgres_answers(url: str) -> bool:
    try:
        connection = await asyncpg.connect(url, timeout=3)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    await connection.close()
    return True


async def _redis_answers(url: str) -> bool:
    client = Redis.from_url(url, socket_connect_timeout=3)
    try:
        return bool(await client.ping())
    except (OSError, RedisError, TimeoutError):
        return False
    finally:
        await client.aclose()


@contextmanager
def postgres_server_url(stack: ExitStack) -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if not url and asyncio.run(_postgres_answers(DEFAULT_POSTGRES_URL)):
        url = DEFAULT_POSTGRES_URL
    if not url:
        data_dir = Path(tempfile.mkdtemp(prefix="billing-tests-"))
        url = stack.enter_context(EmbeddedPostgres(data_dir / "pg", cleanup="delete")).start()
    yield url


@contextmanager
def redis_server_url(stack: ExitStack) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if not url and asyncio.run(_redis_answers(DEFAULT_REDIS_URL)):
        url = DEFAULT_REDIS_URL
    if not url:
        data_dir = Path(tempfile.mkdtemp(prefix="billing-tests-redis-"))
        url = stack.enter_context(EmbeddedRedis(data_dir, persist=False)).start()
    yield url


def unique_database_name() -> str:
    return f"billing_test_{uuid.uuid4().hex[:12]}"


async def claim_redis_database(server_url: str) -> str:
    """A database number on `server_url` that no other run uses; returns its URL."""
    run_id = uuid.uuid4().hex
    base = server_url.split("?")[0].rstrip("/")
    unix = server_url.startswith("unix://")
    for number in range(1, 16):
        url = f"{server_url}?db={number}" if unix else f"{base}/{number}"
        client = Redis.from_url(url)
        try:
            claimed = await client.set(REDIS_CLAIM_KEY, run_id, nx=True, ex=6 * 3600)
            if claimed and await client.dbsize() == 1:
                return url
            if claimed:
                await client.delete(REDIS_CLAIM_KEY)
        finally:
            await client.aclose()
    raise RuntimeError(f"no free Redis database on {server_url}")


async def flush_redis_database(url: str, *, release: bool) -> None:
    client = Redis.from_url(url)
    try:
        claim = await client.get(REDIS_CLAIM_KEY)
        await client.flushdb()
        if not release and claim is not None:
            await client.set(REDIS_CLAIM_KEY, claim, ex=6 * 3600)
    finally:
        await client.aclose()
