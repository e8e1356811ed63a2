"""`make bench`: the service's hot paths against a bare FastAPI app, side by side.

The service and the bare app (one asyncpg statement per request) run under uvicorn with uvloop
and httptools, access logs off, one process each, against the same PostgreSQL. The load comes
from a separate process (`bench/loader.py`: asyncio and httptools, closed loop, fixed
concurrency, warm-up not timed, each run timed for SECONDS_PER_RUN), so the client is not what
is measured: the bench also measures the bare app's "hello" (no database, no framework) at the
start, middle and end, and refuses to report (exit 1) unless the median hello rate is at least
3x the median bare insert rate. Absolute rates move with the machine's load, so every figure that is
compared is a ratio of rates measured in alternating rounds (median of 3).

Per path: the service's rate, p50 and p99, the ratio to its bare counterpart (an indexed select
for reads, an insert for writes; a batch counts records per second), and the API process's
peak resident memory so far. The usage paths run again once the database holds a million usage
records (vacuumed and checkpointed first), each with its ratio relative to the one without
history (1.00 is flat). Then a fixed number of requests of a mixed load (80% usage, 15%
entitlements, 5% subscribe) with Stripe answered by the test kit's fake over HTTP, and the
worker's rate of stored webhook events processed.

`.venv/bin/python -m bench "POST usage/"` runs only the paths whose label contains the text
(no million-record phase, no mixed load).
"""

import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path as FilePath
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text

from app.core.auth import issue_access_token
from app.core.clock import SystemClock
from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.core.embedded import create_database, drop_database
from app.core.logging import configure_logging
from app.core.migrations import upgrade_to_head
from app.main import create_app
from app.plans.default_catalog import install_default_catalog
from app.plans.stripe_catalog import sync_catalog_to_stripe
from app.stripe_gateway.client import PINNED_API_VERSION, StripeGateway
from app.webhooks.processing import process_event
from tests import infra
from tests.conftest import database_url_for, make_settings

ROUNDS = 3
# Each timed run lasts this long, after WARMUP_REQUESTS_PER_CONNECTION untimed requests on
# each connection.
SECONDS_PER_RUN = 4.0
WARMUP_REQUESTS_PER_CONNECTION = 5
CONCURRENCY = 32
BATCH_SIZE = 1_000
# Batches are big: a few in flight at once is what a telephony backend sends.
BATCH_CONCURRENCY = 4
BENCH_CUSTOMERS = 64
WORKER_EVENTS = 300
HISTORY_RECORDS = 1_000_000
MIXED_REQUESTS = 4_000
LOADER_HEADROOM = 3.0
WEBHOOK_SECRET = "whsec_bench"  # noqa: S105 (a bench secret)
# One token and one IP send every request: the limits are checked (their cost is part of
# the figures) but set out of reach.
RATE_LIMITS_OUT_OF_REACH = {
    "RATE_LIMIT_PER_USER_PER_MINUTE": 1_000_000_000,
    "RATE_LIMIT_PER_SERVICE_PER_MINUTE": 1_000_000_000,
    "RATE_LIMIT_WEBHOOK_PER_IP_PER_MINUTE": 1_000_000_000,
    "RATE_LIMIT_PUBLIC_PER_IP_PER_MINUTE": 1_000_000_000,
}
SERVICE_USER = "900000001"
FIRST_CUSTOMER = 1001
API = "/subscriptions/api"


@dataclass(frozen=True)
class Path:
    label: str
    templates: list[dict[str, Any]]
    against: str  # "select" or "insert"
    # Work items per request (records in a batch): the ratio compares items per second.
    items: int = 1
    concurrency: int = CONCURRENCY


@dataclass
class Measured:
    rate: float
    p50_ms: float
    p99_ms: float
    failures: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0
    # The server process's CPU per request (warm-up included) and its share of one core over
    # the run: near 100% the server is the limit, well under it something else is.
    cpu_us: float = 0.0
    cpu_share: float = 0.0
    # PostgreSQL's CPU per request over the same run (its backends, WAL writer and the rest):
    # on a machine whose cores the database shares with the server, the other half of the cost.
    database_cpu_us: float = 0.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def database_cpu_seconds() -> float:
    """CPU time this machine's PostgreSQL processes have used so far (user and system).

    Every process named `postgres`: backends, WAL writer, checkpointer. Nothing else on the
    machine uses PostgreSQL while the bench runs, and the bench's connections outlive a run,
    so a difference over a run is the database's work for that run."""
    total = 0
    for stat in FilePath("/proc").glob("[0-9]*/stat"):
        with suppress(OSError):
            name, _, rest = stat.read_text().partition(" (")[2].rpartition(") ")
            if name == "postgres":
                fields = rest.split()
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]

    def cpu_seconds(self) -> float:
        """CPU time the process has used so far (user and system)."""
        fields = FilePath(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_memory_mb(self) -> float:
        """The process's peak resident set (VmHWM), in MiB."""
        status = FilePath(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0


@contextmanager
def uvicorn(app_path: str, environment: dict[str, str]) -> Iterator[Server]:
    port = _free_port()
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "uvicorn", app_path, "--host", "127.0.0.1", "--port", str(port),
         "--loop", "uvloop", "--http", "httptools", "--log-level", "warning", "--no-access-log"],
        env={**os.environ, **environment},
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{base_url}/openapi.json", timeout=1)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{app_path} did not start") from None
                time.sleep(0.2)
        yield Server(base_url, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


def load_on(server: "Server", templates: list[dict[str, Any]], **options: Any) -> Measured:
    """`load` against `server`, with the server process's CPU use over the run."""
    cpu_before, started = server.cpu_seconds(), time.monotonic()
    database_before = database_cpu_seconds()
    measured = load(server.url, templates, **options)
    cpu = server.cpu_seconds() - cpu_before
    database_cpu = database_cpu_seconds() - database_before
    requests = measured.requests + WARMUP_REQUESTS_PER_CONNECTION * options.get(
        "concurrency", CONCURRENCY
    )
    measured.cpu_us = cpu / requests * 1e6
    measured.cpu_share = cpu / (time.monotonic() - started)
    measured.database_cpu_us = database_cpu / requests * 1e6
    return measured


def load(
    url: str,
    templates: list[dict[str, Any]],
    *,
    seconds: float = SECONDS_PER_RUN,
    requests: int | None = None,
    concurrency: int = CONCURRENCY,
    choices: dict[str, list[str]] | None = None,
) -> Measured:
    """One closed-loop run from the loader process."""
    plan = {
        "url": url,
        "templates": templates,
        **({"seconds": seconds} if requests is None else {"requests": requests}),
        "warmup": WARMUP_REQUESTS_PER_CONNECTION * concurrency,
        "concurrency": concurrency,
        "choices": choices or {},
    }
    finished = subprocess.run(
        [sys.executable, "-m", "bench.loader"],
        input=json.dumps(plan).encode(),
        capture_output=True,
        check=True,
    )
    result = json.loads(finished.stdout)
    return Measured(
        result["rate"], result["p50_ms"], result["p99_ms"], result["failures"],
        result["requests"], result["seconds"],
    )  # fmt: skip


class LoaderTooSlow(Exception):
    pass


def progress(line: str) -> None:
    """Progress on stderr while the run lasts; the report goes to stdout at the end."""
    print(line, file=sys.stderr, flush=True)


@dataclass
class Bench:
    service: Server
    bare: Server
    choices: dict[str, list[str]]
    hello_rates: list[float] = field(default_factory=list)
    insert_rates: list[float] = field(default_factory=list)
    # The bare app's CPU per request, and PostgreSQL's, per endpoint, every reading.
    bare_cpu_us: dict[str, list[float]] = field(default_factory=dict)
    bare_database_cpu_us: dict[str, list[float]] = field(default_factory=dict)
    # The table, printed only once the loader check has passed.
    lines: list[str] = field(default_factory=list)

    def report(self, line: str) -> None:
        self.lines.append(line)
        progress(line)

    def bare_rate(self, against: str) -> float:
        path = "/bare-select" if against == "select" else "/bare-insert"
        method = "GET" if against == "select" else "POST"
        measured = load_on(self.bare, [{"method": method, "path": path}])
        if against == "insert":
            self.insert_rates.append(measured.rate)
        self.bare_cpu_us.setdefault(against, []).append(measured.cpu_us)
        self.bare_database_cpu_us.setdefault(against, []).append(measured.database_cpu_us)
        return measured.rate

    def check_loader(self) -> None:
        """One reading of the loader's ceiling: a bare hello, beside a bare insert."""
        hello = load(self.bare.url, [{"method": "GET", "path": "/hello"}])
        self.hello_rates.append(hello.rate)
        self.bare_rate("insert")
        progress(
            f"loader check: hello {hello.rate:,.0f} req/s, insert {self.insert_rates[-1]:,.0f}"
        )

    def loader_verdict(self) -> str:
        """The loader must outrun the bare insert by LOADER_HEADROOM, or no ratio is true.

        Medians of every reading in the run, so one reading taken while the machine was busy
        with something else neither passes nor fails the bench on its own.
        """
        hello = statistics.median(self.hello_rates)
        insert = statistics.median(self.insert_rates)
        if hello < LOADER_HEADROOM * insert:
            raise LoaderTooSlow(
                f"the loader reached {hello:,.0f} req/s on a bare hello (median), under "
                f"{LOADER_HEADROOM}x the bare insert's {insert:,.0f} req/s: figures not reported"
            )
        return (
            f"loader check: bare hello {hello:,.0f} req/s, bare insert {insert:,.0f} req/s "
            f"(medians of {len(self.hello_rates)} and {len(self.insert_rates)} readings): "
            f"{hello / insert:.1f}x (at least {LOADER_HEADROOM}x required); the bare app's CPU "
            "(PostgreSQL's): "
            + ", ".join(
                f"{against} {statistics.median(cpu):,.0f} µs/req "
                f"({statistics.median(self.bare_database_cpu_us[against]):,.0f})"
                for against, cpu in sorted(self.bare_cpu_us.items())
            )
        )

    def measure(self, path: Path, without_history: dict[str, float] | None = None) -> float:
        ratios, runs = [], []
        for _ in range(ROUNDS):
            bare = self.bare_rate(path.against)
            run = load_on(
                self.service,
                path.templates,
                concurrency=path.concurrency,
                choices=self.choices,
            )
            if run.failures:
                raise RuntimeError(f"{path.label}: answers not 2xx: {run.failures}")
            runs.append(run)
            ratios.append(run.rate * path.items / bare)
        middle = sorted(range(ROUNDS), key=lambda index: ratios[index])[ROUNDS // 2]
        run = runs[middle]
        unit = "records/s" if path.items > 1 else "req/s"
        self.report(
            f"{path.label:46} {run.rate * path.items:>9,.0f} {unit:9} "
            f"p50 {run.p50_ms:>7.1f} ms  p99 {run.p99_ms:>7.1f} ms  "
            f"{statistics.median(ratios):>6.2f}x bare {path.against:6}  "
            f"peak {self.service.peak_memory_mb():>5.0f} MiB  "
            f"CPU {run.cpu_us / path.items:>5,.0f} µs/{'record' if path.items > 1 else 'req'} "
            f"({run.cpu_share:.0%} of a core), PostgreSQL's "
            f"{run.database_cpu_us / path.items:>5,.0f} µs"
            + (
                f"  {statistics.median(ratios) / without_history[path.label]:.2f} of the ratio "
                "without history"
                if without_history and path.label in without_history
                else ""
            )
        )
        return statistics.median(ratios)


def _token(settings: Settings, user_id: str, roles: list[str]) -> str:
    return issue_access_token(
        settings, user_id=user_id, roles=roles, now=SystemClock().now(),
        lifetime=timedelta(hours=3),
    )  # fmt: skip


def _record(customer: str) -> str:
    return (
        f'{{"customer_id": "{customer}", "minutes_used": "1.5", "call_id": "{{{{uuid}}}}", '
        '"timestamp": "{{now}}"}'
    )


def signed_webhook() -> dict[str, Any]:
    body = json.dumps(
        {
            "id": "evt_bench_{{uuid}}",
            "object": "event",
            "type": "customer.deleted",
            "api_version": PINNED_API_VERSION,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": {"id": "cus_bench_{{uuid}}", "object": "customer"}},
        }
    )
    return {
        "method": "POST",
        "path": f"{API}/stripe-webhook/",
        "body": body,
        "headers": {"Content-Type": "application/json"},
        "stripe_webhook_secret": WEBHOOK_SECRET,
    }


def paths(settings: Settings, openapi: dict[str, Any]) -> tuple[list[Path], list[Path]]:
    service = {
        "Authorization": f"Bearer {_token(settings, SERVICE_USER, ['service'])}",
        "Content-Type": "application/json",
    }
    user = {"Authorization": f"Bearer {_token(settings, str(FIRST_CUSTOMER), [])}"}
    general = [
        Path("GET plans/ (public catalog)",
             [{"method": "GET", "path": f"{API}/plans/"}], "select"),
        Path("GET account/ (JWT + account)",
             [{"method": "GET", "path": f"{API}/account/", "headers": user}], "select"),
        Path("POST stripe-webhook/ (verify, store, enqueue)", [signed_webhook()], "insert"),
    ]  # fmt: skip
    batch_body = '{"records": [' + ", ".join([_record("{{customer}}")] * BATCH_SIZE) + "]}"
    usage = [
        Path(
            "POST usage/ (one call)",
            [{"method": "POST", "path": f"{API}/usage/", "headers": service,
              "body": _record("{{customer}}")}],
            "insert",
        ),
        Path(
            f"POST usage/batch/ ({BATCH_SIZE:,} records)",
            [{"method": "POST", "path": f"{API}/usage/batch/", "headers": service,
              "body": batch_body}],
            "insert", items=BATCH_SIZE, concurrency=BATCH_CONCURRENCY,
        ),
        Path(
            "GET entitlements/ (quota check)",
            [{"method": "GET", "path": f"{API}/entitlements/?customer_id={{{{customer}}}}",
              "headers": service}],
            "select",
        ),
        Path("GET usage/ (summary)",
             [{"method": "GET", "path": f"{API}/usage/", "headers": user}], "select"),
    ]  # fmt: skip
    usage = [path for path in usage if path.templates[0]["path"].split("?")[0] in openapi]
    return general, usage


def mixed_templates(settings: Settings, subscribers: list[str]) -> list[dict[str, Any]]:
    service = {
        "Authorization": f"Bearer {_token(settings, SERVICE_USER, ['service'])}",
        "Content-Type": "application/json",
    }
    # A card of its own for each subscriber: the fake's `pm_card_visa` is one card, attached
    # to the first subscriber, and to everyone else another customer's card does not exist.
    subscribe_body = json.dumps(
        {"plan_id": 1, "payment_method_id": "pm_bench{{uuid}}", "billing_cycle": "monthly"}
    )
    return [
        {"weight": 80, "method": "POST", "path": f"{API}/usage/", "headers": service,
         "body": _record("{{customer}}")},
        {"weight": 15, "method": "GET", "path": f"{API}/entitlements/?customer_id={{{{customer}}}}",
         "headers": service},
        {"weight": 5, "method": "POST", "path": f"{API}/subscribe/", "body": subscribe_body,
         "headers": {"Content-Type": "application/json"},
         "header_sets": [
             {"Authorization": f"Bearer {_token(settings, user, [])}"} for user in subscribers
         ]},
    ]  # fmt: skip


async def seed_catalog(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker.begin() as session:
            await install_default_catalog(session, billing_currency=settings.BILLING_CURRENCY)
        await sync_catalog_to_stripe(
            sessionmaker=sessionmaker, gateway=StripeGateway(settings), force_update=False
        )
    finally:
        await engine.dispose()


async def seed_accounts(dsn: str) -> list[int]:
    """BENCH_CUSTOMERS customers, each with an active subscription to the first plan."""
    connection = await asyncpg.connect(dsn)
    try:
        anchor = datetime.now(UTC) - timedelta(days=5)
        subscription_ids = []
        for number in range(BENCH_CUSTOMERS):
            customer_id = await connection.fetchval(
                "INSERT INTO customers (dashboard_user_id) VALUES ($1) RETURNING id",
                str(FIRST_CUSTOMER + number),
            )
            subscription_ids.append(
                await connection.fetchval(
                    """INSERT INTO subscriptions (customer_id, plan_id, billing_cycle, status,
                           stripe_subscription_id, billing_cycle_anchor, current_period_start,
                           current_period_end)
                       VALUES ($1, 1, 'monthly', 'active', $2, $3, $3, $4) RETURNING id""",
                    customer_id,
                    f"sub_bench_{number}",
                    anchor,
                    anchor + timedelta(days=30),
                )
            )
        return subscription_ids
    finally:
        await connection.close()


async def seed_history(dsn: str, subscription_ids: list[int]) -> None:
    """A million past usage records spread over the accounts, as long-lived accounts have."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            """INSERT INTO usage_records (customer_id, subscription_id, kind, call_id, minutes,
                   occurred_at, period_start, source, request_fingerprint, created_at)
               SELECT s.customer_id, s.id, 'minutes', 'history-' || n, 2,
                      now() - interval '400 days' + n * interval '30 seconds',
                      now() - interval '400 days', 'service', md5(n::text), now()
               FROM generate_series(1, $2) AS n
               JOIN subscriptions s ON s.id = ($1::bigint[])[1 + n % array_length($1, 1)]""",
            subscription_ids,
            HISTORY_RECORDS,
        )
        # What a long-lived database looks like: vacuumed, its statistics fresh, and the
        # bulk load's WAL checkpointed, so autovacuum and the checkpointer do not run during
        # the measurements that follow (they would bill the load to the history).
        await connection.execute("VACUUM ANALYZE usage_records")
        with suppress(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CHECKPOINT")
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


def run(database_url: str, redis_url: str, only: str | None) -> None:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    with ExitStack() as stack:
        stripe = stack.enter_context(uvicorn("tests.stripe.http_server:app", {}))
        settings = make_settings(
            database_url,
            redis_url,
            STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
            STRIPE_API_BASE=stripe.url,
            LOG_LEVEL="WARNING",
        )
        # The bench's own Stripe calls (the catalog) log warnings only, and to stderr: stdout
        # is the report.
        configure_logging(settings, for_command=True)
        asyncio.run(seed_catalog(settings))
        subscription_ids = asyncio.run(seed_accounts(dsn))
        service = stack.enter_context(
            uvicorn(
                "app.main:app",
                {
                    "ENVIRONMENT": "test",
                    "DATABASE_URL": database_url,
                    "REDIS_URL": redis_url,
                    "JWT_SECRET": settings.jwt_verification_key,
                    "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                    "STRIPE_SECRET_KEY": "sk_test_bench",
                    "STRIPE_API_BASE": stripe.url,
                    "LOG_LEVEL": "WARNING",
                    **{name: str(limit) for name, limit in RATE_LIMITS_OUT_OF_REACH.items()},
                },
            )
        )
        bare = stack.enter_context(uvicorn("bench.bare_app:app", {"BENCH_BARE_DSN": dsn}))
        customers = [str(FIRST_CUSTOMER + number) for number in range(BENCH_CUSTOMERS)]
        bench = Bench(service, bare, {"customer": customers})
        openapi = httpx.get(f"{service.url}/openapi.json").json()["paths"]
        general, usage = paths(settings, openapi)
        if only is not None:
            general = [path for path in general if only in path.label]
            usage = [path for path in usage if only in path.label]

        bench.report(
            f"loader: bench/loader.py in its own process (asyncio + httptools, closed loop), "
            f"{CONCURRENCY} connections ({BATCH_CONCURRENCY} for batches); "
            f"{BENCH_CUSTOMERS} customers; median of {ROUNDS} alternating rounds"
        )
        bench.check_loader()
        for path in general:
            bench.measure(path)
        without_history = {path.label: bench.measure(path) for path in usage}
        bench.check_loader()
        if usage and only is None:
            asyncio.run(seed_history(dsn, subscription_ids))
            bench.report(f"with {HISTORY_RECORDS:,} usage records stored:")
            for path in usage:
                bench.measure(path, without_history)
            bench.check_loader()
        if only is None:
            subscribers = [str(2_000_000 + number) for number in range(MIXED_REQUESTS // 10)]
            mixed = load(
                service.url,
                mixed_templates(settings, subscribers),
                requests=MIXED_REQUESTS,
                choices=bench.choices,
            )
            bench.report(
                f"mixed (80% usage, 15% entitlements, 5% subscribe), {MIXED_REQUESTS:,} requests: "
                f"{mixed.rate:,.0f} req/s, p50 {mixed.p50_ms:.1f} ms, p99 {mixed.p99_ms:.1f} ms, "
                f"peak {service.peak_memory_mb():.0f} MiB, not 2xx: {mixed.failures or 'none'}"
            )
        verdict = bench.loader_verdict()
    if only is None or only in "worker":
        rate = asyncio.run(worker_events_per_second(settings))
        bench.report(f"worker: stored webhook events processed  {rate:,.0f} /s (in process)")
    print("\n".join([*bench.lines, verdict]))


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
                run(database_url, redis_url, only=" ".join(sys.argv[1:]) or None)
            except LoaderTooSlow as error:
                print(f"bench refused: {error}", file=sys.stderr)
                raise SystemExit(1) from None
            finally:
                asyncio.run(infra.flush_redis_database(redis_url, release=True))
        finally:
            asyncio.run(drop_database(server_url, name))


if __name__ == "__main__":
    main()
