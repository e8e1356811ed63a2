"""Rate limits through the HTTP API, counted in the test Redis unless a test asks for memory.

The windows of `limits` run on real time and start at a key's first hit, so each test makes
its requests within one window and asserts on counts; the pause after a Redis failure runs on
an injected monotonic clock.
"""

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest
from limits.aio.storage import MemoryStorage
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core import auth
from app.core.clock import FrozenClock
from app.core.config import Settings
from app.core.metrics import REGISTRY
from app.core.rate_limits import (
    PAUSE_AFTER_FAILURE_SECONDS,
    RateLimit,
    RateLimited,
    RequestRateLimiter,
    create_rate_limiter,
    lease_size,
    per_minute_limits,
)
from app.main import create_app
from tests.conftest import TokenFactory, bearer, make_settings

API = "/subscriptions/api"
WEBHOOK = f"{API}/stripe-webhook/"


@asynccontextmanager
async def serving(
    settings: Settings,
    clock: FrozenClock,
    *client_ips: str,
    rate_limiter: RequestRateLimiter | None = None,
) -> AsyncIterator[list[httpx.AsyncClient]]:
    """The app, started, and one client per IP (one from 198.51.100.7 by default)."""
    app = create_app(settings, clock, rate_limiter=rate_limiter)
    async with app.router.lifespan_context(app), AsyncExitStack() as stack:
        clients = []
        for ip in client_ips or ("198.51.100.7",):
            transport = httpx.ASGITransport(app=app, client=(ip, 40_000))
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            clients.append(await stack.enter_async_context(client))
        yield clients


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def limited(database_url: str, redis_url: str, engine: AsyncEngine) -> Any:
    def settings(**overrides: Any) -> Settings:
        return make_settings(database_url, redis_url, **overrides)

    return settings


def assert_rate_limited(response: httpx.Response, limit: str, per_minute: int) -> None:
    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert response.json() == {
        "success": False,
        "error": {
            "code": "rate_limited",
            "message": f"Too many requests: at most {per_minute} a minute. "
            f"Retry in {retry_after} s.",
            "details": {
                "limit": limit,
                "per_minute": per_minute,
                "retry_after_seconds": retry_after,
            },
        },
    }


async def test_the_request_after_a_users_limit_is_429_with_retry_after_in_the_envelope(
    limited: Any, clock: FrozenClock, make_token: TokenFactory
) -> None:
    before = counter("billing_rate_limited_requests_total", limit="user")
    headers = bearer(make_token("42"))
    async with serving(limited(RATE_LIMIT_PER_USER_PER_MINUTE=3), clock) as [client]:
        statuses = [(await client.get(f"{API}/account/", headers=headers)).status_code]
        statuses += [(await client.get(f"{API}/account", headers=headers)).status_code]
        statuses += [(await client.get(f"{API}/usage/", headers=headers)).status_code]
        over = await client.get(f"{API}/account/", headers=headers)

    assert 429 not in statuses
    assert_rate_limited(over, "user", 3)
    assert counter("billing_rate_limited_requests_total", limit="user") == before + 1


async def test_one_users_burst_does_not_limit_another(
    limited: Any, clock: FrozenClock, make_token: TokenFactory
) -> None:
    async with serving(limited(RATE_LIMIT_PER_USER_PER_MINUTE=2), clock) as [client]:
        for _ in range(3):
            last = await client.get(f"{API}/account/", headers=bearer(make_token("42")))
        other = await client.get(f"{API}/account/", headers=bearer(make_token("43")))

    assert last.status_code == 429
    assert other.status_code == 200


async def test_a_service_token_is_counted_apart_on_its_own_higher_limit(
    limited: Any, clock: FrozenClock, make_token: TokenFactory
) -> None:
    settings = limited(RATE_LIMIT_PER_USER_PER_MINUTE=2, RATE_LIMIT_PER_SERVICE_PER_MINUTE=4)
    service = bearer(make_token("9001", roles=["service"]))
    async with serving(settings, clock) as [client]:
        # For several customers, all on the service principal's one budget.
        statuses = [
            (await client.get(f"{API}/alerts/?customer_id={n}", headers=service)).status_code
            for n in range(4)
        ]
        over = await client.get(f"{API}/alerts/?customer_id=9", headers=service)
        # A user whose id happens to be the service's is another caller.
        user = await client.get(f"{API}/account/", headers=bearer(make_token("9001")))

    assert 429 not in statuses
    assert_rate_limited(over, "service", 4)
    assert user.status_code == 200


async def test_pdf_downloads_have_a_tighter_limit_than_the_rest(
    limited: Any, clock: FrozenClock, make_token: TokenFactory
) -> None:
    settings = limited(RATE_LIMIT_PER_USER_PER_MINUTE=10, RATE_LIMIT_PDF_PER_USER_PER_MINUTE=2)
    headers = bearer(make_token("42"))
    async with serving(settings, clock) as [client]:
        pdfs = [
            (await client.get(f"{API}/billing-history/{n}/pdf/", headers=headers))
            for n in (1, 2, 3)
        ]
        account = await client.get(f"{API}/account/", headers=headers)

    assert [response.status_code for response in pdfs[:2]] == [404, 404]
    assert_rate_limited(pdfs[2], "pdf", 2)
    assert account.status_code == 200


async def test_the_webhook_limit_is_per_source_ip(limited: Any, clock: FrozenClock) -> None:
    settings = limited(RATE_LIMIT_WEBHOOK_PER_IP_PER_MINUTE=2)
    async with serving(settings, clock, "203.0.113.10", "203.0.113.11") as [one, two]:
        # Unsigned deliveries: a refused one still counts, so junk cannot flood past it.
        first = [(await one.post(WEBHOOK, content=b"{}")).status_code for _ in range(2)]
        over = await one.post(WEBHOOK, content=b"{}")
        other_ip = await two.post(WEBHOOK, content=b"{}")

    assert first == [400, 400]
    assert_rate_limited(over, "webhook_ip", 2)
    assert other_ip.status_code == 400


async def test_the_catalog_is_limited_per_ip_without_a_token(
    limited: Any, clock: FrozenClock
) -> None:
    settings = limited(RATE_LIMIT_PUBLIC_PER_IP_PER_MINUTE=1)
    async with serving(settings, clock, "192.0.2.1", "192.0.2.2") as [one, two]:
        first = await one.get(f"{API}/plans/")
        over = await one.get(f"{API}/plans/5/")
        elsewhere = await two.get(f"{API}/plans/")

    assert first.status_code == 200
    assert_rate_limited(over, "public_ip", 1)
    assert elsewhere.status_code == 200


async def test_a_limited_request_decodes_its_token_once(
    limited: Any, clock: FrozenClock, make_token: TokenFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded: list[str] = []
    original = auth.decode_access_token

    def counting(token: str, settings: Settings, now: Any) -> auth.Principal:
        decoded.append(token)
        return original(token, settings, now)

    monkeypatch.setattr(auth, "decode_access_token", counting)
    async with serving(limited(), clock) as [client]:
        response = await client.get(
            f"{API}/usage/", headers=bearer(make_token("42", roles=["service"]))
        )

    assert response.status_code != 429
    assert len(decoded) == 1


async def test_a_429_is_not_replayed_for_the_same_idempotency_key(
    limited: Any, clock: FrozenClock, make_token: TokenFactory
) -> None:
    settings = limited(RATE_LIMIT_PER_USER_PER_MINUTE=1)
    headers = {**bearer(make_token("42")), "Idempotency-Key": "ack-1"}
    acknowledge = f"{API}/alerts/1/acknowledge/"
    limiter = RequestRateLimiter.in_memory(settings)
    async with serving(settings, clock, rate_limiter=limiter) as [client]:
        await client.get(f"{API}/account/", headers=headers)
        refused = await client.post(acknowledge, headers=headers)
    # A new window (a fresh counter), and the client retries with the same key.
    limiter = RequestRateLimiter.in_memory(settings)
    async with serving(settings, clock, rate_limiter=limiter) as [client]:
        retried = await client.post(acknowledge, headers=headers)

    assert refused.status_code == 429
    assert retried.status_code == 404
    assert "Idempotent-Replayed" not in retried.headers


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A server that accepts connections and never answers: a hung Redis."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_with_redis_down_requests_pass_unchecked_and_are_counted(
    database_url: str,
    engine: AsyncEngine,
    clock: FrozenClock,
    make_token: TokenFactory,
    closed_port: int,
) -> None:
    settings = make_settings(
        database_url, f"redis://127.0.0.1:{closed_port}/0", RATE_LIMIT_PER_USER_PER_MINUTE=1
    )
    monotonic = FakeMonotonic()
    errors = counter("billing_rate_limit_fail_open_total", reason="storage_error")
    paused = counter("billing_rate_limit_fail_open_total", reason="paused")
    headers = bearer(make_token("42"))
    limiter = create_rate_limiter(settings, monotonic=monotonic)
    async with serving(settings, clock, rate_limiter=limiter) as [client]:
        first = await client.get(f"{API}/account/", headers=headers)
        second = await client.get(f"{API}/account/", headers=headers)
        monotonic.now += PAUSE_AFTER_FAILURE_SECONDS + 0.1
        after_the_pause = await client.get(f"{API}/plans/")

    assert [first.status_code, second.status_code, after_the_pause.status_code] == [200] * 3
    # The first failure, one request let through while paused, then Redis asked (and failing)
    # again once the pause is over.
    assert counter("billing_rate_limit_fail_open_total", reason="storage_error") == errors + 2
    assert counter("billing_rate_limit_fail_open_total", reason="paused") == paused + 1


async def test_a_hung_redis_costs_one_short_timeout_then_nothing(
    database_url: str,
    engine: AsyncEngine,
    clock: FrozenClock,
    make_token: TokenFactory,
    silent_redis: str,
) -> None:
    settings = make_settings(database_url, silent_redis, RATE_LIMIT_REDIS_TIMEOUT_SECONDS=0.05)
    headers = bearer(make_token("42"))
    errors = counter("billing_rate_limit_fail_open_total", reason="storage_error")
    paused = counter("billing_rate_limit_fail_open_total", reason="paused")
    async with serving(settings, clock) as [client]:
        responses = [await client.get(f"{API}/account/", headers=headers) for _ in range(5)]

    assert [response.status_code for response in responses] == [200] * 5
    # Redis was waited for once (one short timeout); the four after it did not ask at all.
    assert counter("billing_rate_limit_fail_open_total", reason="storage_error") == errors + 1
    assert counter("billing_rate_limit_fail_open_total", reason="paused") == paused + 4


class CountingStorage(MemoryStorage):
    """Memory storage that counts the calls made to it, as a shared Redis would see them."""

    def __init__(self) -> None:
        super().__init__(wrap_exceptions=True)
        self.increments = 0

    async def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        self.increments += 1
        # Other requests run while this one waits for the store, as they do with Redis.
        await asyncio.sleep(0)
        return await super().incr(key, expiry, amount)


async def test_a_high_limit_is_taken_from_the_store_in_leases_and_never_exceeded(
    limited: Any,
) -> None:
    settings = limited(RATE_LIMIT_PER_SERVICE_PER_MINUTE=1_000)
    storage = CountingStorage()
    # Two API processes counting against one store.
    processes = [RequestRateLimiter(storage, per_minute_limits(settings)) for _ in range(2)]
    allowed = 0
    refused: list[RateLimited] = []
    for number in range(1_100):
        try:
            await processes[number % 2].hit(RateLimit.SERVICE, "9001")
        except RateLimited as error:
            refused.append(error)
        else:
            allowed += 1

    assert lease_size(1_000) == 10
    # Never more than the limit; at most one lease per process left unused at the end.
    assert 1_000 - 2 * (lease_size(1_000) - 1) <= allowed <= 1_000
    assert len(refused) == 1_100 - allowed
    assert refused[0].details["per_minute"] == 1_000
    # The store is asked once per lease while the limit lasts, not once per request.
    assert storage.increments <= 1_000 // lease_size(1_000) + 2 + len(refused)


async def test_a_low_limit_is_counted_request_by_request(limited: Any) -> None:
    settings = limited(RATE_LIMIT_PDF_PER_USER_PER_MINUTE=20)
    storage = CountingStorage()
    processes = [RequestRateLimiter(storage, per_minute_limits(settings)) for _ in range(2)]
    for number in range(20):
        await processes[number % 2].hit(RateLimit.PDF, "42")

    with pytest.raises(RateLimited):
        await processes[0].hit(RateLimit.PDF, "42")
    with pytest.raises(RateLimited):
        await processes[1].hit(RateLimit.PDF, "42")
    assert storage.increments == 22


async def test_a_burst_of_concurrent_requests_takes_one_lease_not_one_each(limited: Any) -> None:
    settings = limited(RATE_LIMIT_PER_USER_PER_MINUTE=600)
    limiter = RequestRateLimiter(CountingStorage(), per_minute_limits(settings))

    # 200 at once, before any lease has come back: far under 600, so none is refused.
    await asyncio.gather(*(limiter.hit(RateLimit.USER, "42") for _ in range(200)))

    for _ in range(600 - 200 - (lease_size(600) - 1)):
        await limiter.hit(RateLimit.USER, "42")
