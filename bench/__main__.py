"""`make bench`: the service's hot paths against a bare FastAPI app, side by side.

Both run under uvicorn with uvloop and httptools, as in production, one process each, against
the same PostgreSQL; the load comes from this process over loopback. Absolute rates move with
the machine's load, so every HTTP figure is a ratio of rates measured in alternating rounds:
the service's path against the bare app doing one asyncpg statement (an indexed select for
reads, an insert for writes). The usage paths are measured again once the database holds a
million usage records, to show that their cost follows the work, not the history. The
worker's figure is stored webhook events processed per second, in process, with Stripe not
called (fresh payloads need no fetch).
"""

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text

from app.core.auth import issue_access_token
from app.core.clock import SystemClock
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
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
REQUESTS_PER_ROUND = 600
CONCURRENCY = 16
BATCH_SIZE = 1_000
WORKER_EVENTS = 300
HISTORY_RECORDS = 1_000_000
WEBHOOK_SECRET = "whsec_bench"  # noqa: S105 (a bench secret)
BENCH_CUSTOMER = "bench-customer"

Request = tuple[str, str, bytes | None, dict[str, str]]
RequestFactory = Callable[[], Request]


@dataclass(frozen=True)
class Path:
    label: str
    make_request: RequestFactory
    against: str  # "select" or "insert"
    # Work items per request (records in a batch): the ratio compares items per second.
    items: int = 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def uvicorn(app_path: str, environment: dict[str, str]) -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", app_path, "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"],
        env={**os.environ, **environment},
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base_url}/openapi.json", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{app_path} did not start") from None
                time.sleep(0.2)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=10)


async def rate(client: httpx.AsyncClient, make_request: RequestFactory) -> float:
    """Requests per second for REQUESTS_PER_ROUND requests at CONCURRENCY."""
    remaining = REQUESTS_PER_ROUND

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            method, path, body, headers = make_request()
            response = await client.request(method, path, content=body, headers=headers)
            if response.status_code >= 400:
                raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return REQUESTS_PER_ROUND / (time.perf_counter() - started)


async def ratio(
    service: httpx.AsyncClient,
    bare: httpx.AsyncClient,
    path: Path,
    bare_requests: dict[str, RequestFactory],
) -> float:
    ratios = []
    for _ in range(ROUNDS):
        bare_rate = await rate(bare, bare_requests[path.against])
        service_rate = await rate(service, path.make_request) * path.items
        ratios.append(service_rate / bare_rate)
    return statistics.median(ratios)


def signed_webhook() -> Request:
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
    headers = {"Stripe-Signature": signature_header(body, WEBHOOK_SECRET, now)}
    return ("POST", "/subscriptions/api/stripe-webhook/", body, headers)


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def usage_paths(settings: Settings) -> list[Path]:
    now = SystemClock().now()
    service_token = issue_access_token(
        settings, user_id="telephony", roles=["service"], now=now, lifetime=timedelta(hours=2)
    )
    user_token = issue_access_token(
        settings, user_id=BENCH_CUSTOMER, roles=[], now=now, lifetime=timedelta(hours=2)
    )
    service = {"Authorization": f"Bearer {service_token}", "Content-Type": "application/json"}
    user = {"Authorization": f"Bearer {user_token}"}

    def record() -> dict[str, Any]:
        return {
            "customer_id": BENCH_CUSTOMER,
            "minutes_used": "1.5",
            "call_id": uuid.uuid4().hex,
            "timestamp": datetime.now(UTC).isoformat(),
        }

    return [
        Path(
            "POST usage/ (one call)",
            lambda: ("POST", "/subscriptions/api/usage/", _json(record()), service),
            "insert",
        ),
        Path(
            f"POST usage/batch/ ({BATCH_SIZE} records, per record)",
            lambda: (
                "POST",
                "/subscriptions/api/usage/batch/",
                _json({"records": [record() for _ in range(BATCH_SIZE)]}),
                service,
            ),
            "insert",
            items=BATCH_SIZE,
        ),
        Path(
            "GET entitlements/ (quota check)",
            lambda: (
                "GET",
                f"/subscriptions/api/entitlements/?customer_id={BENCH_CUSTOMER}",
                None,
                service,
            ),
            "select",
        ),
        Path(
            "GET usage/ (summary)",
            lambda: ("GET", "/subscriptions/api/usage/", None, user),
            "select",
        ),
    ]


async def seed_catalog(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine).begin() as session:
            await install_default_catalog(session, billing_currency=settings.BILLING_CURRENCY)
    finally:
        await engine.dispose()


async def seed_account(dsn: str) -> int:
    """The bench customer with an active subscription to the first plan."""
    connection = await asyncpg.connect(dsn)
    try:
        customer_id = await connection.fetchval(
            "INSERT INTO customers (dashboard_user_id) VALUES ($1) RETURNING id", BENCH_CUSTOMER
        )
        anchor = datetime.now(UTC) - timedelta(days=5)
        subscription_id: int = await connection.fetchval(
            """INSERT INTO subscriptions (customer_id, plan_id, billing_cycle, status,
                   stripe_subscription_id, billing_cycle_anchor, current_period_start,
                   current_period_end)
               VALUES ($1, 1, 'monthly', 'active', 'sub_bench', $2, $2, $3) RETURNING id""",
            customer_id,
            anchor,
            anchor + timedelta(days=30),
        )
        return subscription_id
    finally:
        await connection.close()


async def seed_history(dsn: str, subscription_id: int) -> None:
    """A million past usage records (and their daily totals), as a long-lived account has."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """INSERT INTO usage_records (customer_id, subscription_id, kind, call_id, minutes,
                   occurred_at, period_start, source, request_fingerprint, created_at)
               SELECT s.customer_id, s.id, 'minutes', 'history-' || n, 2,
                      now() - interval '400 days' + n * interval '30 seconds',
                      now() - interval '400 days', 'service', md5(n::text), now()
               FROM subscriptions s, generate_series(1, $2) AS n
               WHERE s.id = $1""",
            subscription_id,
            HISTORY_RECORDS,
        )
        await connection.execute("ANALYZE")
    finally:
        await connection.close()


async def worker_events_per_second(settings: Settings) -> float:
    service = create_app(settings)
    async with service.router.lifespan_context(service):
        async with service.state.sessionmaker() as session:
            pending = (
                (
                    await session.execute(
                        text(
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


def _print(label: str, against: str, value: float, suffix: str = "x") -> None:
    print(f"{label:46} {against:12} {value:>8.2f}{suffix}", flush=True)


async def run(database_url: str, redis_url: str, only: str | None = None) -> None:
    settings = make_settings(
        database_url, redis_url, STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET, LOG_LEVEL="WARNING"
    )
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    service_environment = {
        "ENVIRONMENT": "test",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": settings.jwt_verification_key,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_SECRET_KEY": "sk_test_bench",
        "LOG_LEVEL": "WARNING",
        # One token and one IP send every request: the limits are checked (their cost is
        # part of the figures) but set out of reach.
        **{
            name: "1000000000"
            for name in (
                "RATE_LIMIT_PER_USER_PER_MINUTE",
                "RATE_LIMIT_PER_SERVICE_PER_MINUTE",
                "RATE_LIMIT_WEBHOOK_PER_IP_PER_MINUTE",
                "RATE_LIMIT_PUBLIC_PER_IP_PER_MINUTE",
            )
        },
    }
    await seed_catalog(settings)
    with (
        uvicorn("app.main:app", service_environment) as service_url,
        uvicorn("bench.bare_app:app", {"BENCH_BARE_DSN": dsn}) as bare_url,
    ):
        async with (
            httpx.AsyncClient(base_url=service_url, timeout=30) as service,
            httpx.AsyncClient(base_url=bare_url, timeout=30) as bare,
        ):
            await service.get("/subscriptions/api/plans/")
            subscription_id = await seed_account(dsn)
            token = issue_access_token(
                settings, user_id="bench-reader", roles=[], now=SystemClock().now(),
                lifetime=timedelta(hours=2),
            )  # fmt: skip
            bare_requests: dict[str, RequestFactory] = {
                "select": lambda: ("GET", "/bare-select", None, {}),
                "insert": lambda: ("POST", "/bare-insert", None, {}),
            }
            paths = [
                Path("GET plans/ (public catalog)",
                     lambda: ("GET", "/subscriptions/api/plans/", None, {}), "select"),
                Path("GET account/ (JWT + account)",
                     lambda: ("GET", "/subscriptions/api/account/", None,
                              {"Authorization": f"Bearer {token}"}), "select"),
                Path("POST stripe-webhook/ (verify, store, enqueue)", signed_webhook, "insert"),
            ]  # fmt: skip
            openapi = (await service.get("/openapi.json")).json()["paths"]
            usage = [
                path
                for path in usage_paths(settings)
                if path.make_request()[1].split("?")[0] in openapi
            ]
            if only is not None:
                # `python -m bench "POST usage/"`: the paths whose label contains the text.
                paths = [path for path in paths if only in path.label]
                usage = [path for path in usage if only in path.label]
            await rate(bare, bare_requests["select"])  # warm both up
            await rate(service, lambda: ("GET", "/subscriptions/api/plans/", None, {}))
            print(f"{'path':46} {'against':12} {'service/bare (median of rounds)'}")
            for path in [*paths, *usage]:
                _print(
                    path.label,
                    f"bare {path.against}",
                    await ratio(service, bare, path, bare_requests),
                )
            # A run of chosen paths skips the million-record phase (minutes of seeding).
            if usage and only is None:
                await seed_history(dsn, subscription_id)
                print(f"with {HISTORY_RECORDS:,} usage records already stored:")
                for path in usage:
                    _print(
                        path.label,
                        f"bare {path.against}",
                        await ratio(service, bare, path, bare_requests),
                    )
    if only is None or only in "worker":
        _print(
            "worker: stored events processed", "", await worker_events_per_second(settings), " /s"
        )


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
                asyncio.run(run(database_url, redis_url, only=" ".join(sys.argv[1:]) or None))
            finally:
                asyncio.run(infra.flush_redis_database(redis_url, release=True))
        finally:
            asyncio.run(drop_database(server_url, name))


if __name__ == "__main__":
    main()
