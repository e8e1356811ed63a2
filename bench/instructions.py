"""CPU cost per request of the bench's paths, without HTTP or a loader: for attribution.

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=/tmp/cg.%p \\
        .venv/bin/python -m bench.instructions "POST usage/" 200

The service runs in this process (uvloop, its lifespan started) against a fresh database
seeded as `make bench` seeds it, and each request is handed to it through ASGI, 4 at a time,
after a warm-up. Under callgrind the instrumentation is switched on for the timed requests
only (`callgrind_control`), so valgrind's "Collected" count divided by the number of
requests is the instructions a request costs this process: a figure that does not move with
what else the machine runs, unlike rates. PostgreSQL's and Redis's own work is not in it.
Without valgrind it prints the CPU time per request, this process's and PostgreSQL's (noisy
on a shared machine). "bare
insert" and "bare select" measure the bare app the same way.
"""

import asyncio
import os
import random
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any

import uvloop
from starlette.types import ASGIApp, Message

from app.core.embedded import create_database, drop_database
from app.core.logging import configure_logging
from app.core.migrations import upgrade_to_head
from app.main import create_app
from bench import __main__ as bench
from bench.loader import Template
from tests import infra
from tests.conftest import database_url_for, make_settings

CONCURRENCY = 4
WARMUP_REQUESTS = 80


def _instrument(on: bool) -> None:
    """Switch callgrind's instrumentation; nothing happens outside valgrind."""
    subprocess.run(  # noqa: S603
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],  # noqa: S607
        capture_output=True,
        check=False,
    )


async def _drive(
    app: ASGIApp, template: Template, customers: list[str], count: int
) -> dict[int, int]:
    chooser = random.Random(7)  # noqa: S311 (picks bench customers)
    statuses: dict[int, int] = {}

    async def one() -> None:
        method, target, body, headers = template.request(chooser)
        path, _, query = target.partition("?")
        raw_headers = [(b"host", b"bench")] + [
            (name.lower().encode(), value.encode()) for name, value in headers.items()
        ]
        if body is not None:
            raw_headers.append((b"content-length", str(len(body)).encode()))
        scope: dict[str, Any] = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
            "query_string": query.encode(), "root_path": "", "headers": raw_headers,
            "client": ("127.0.0.1", 40_000), "server": ("127.0.0.1", 80), "state": {},
        }  # fmt: skip
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                await asyncio.Event().wait()  # the client never goes away
            sent = True
            return {"type": "http.request", "body": body or b"", "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                statuses[message["status"]] = statuses.get(message["status"], 0) + 1

        await app(scope, receive, send)

    async def worker(requests: int) -> None:
        for _ in range(requests):
            await one()

    await asyncio.gather(*(worker(count // CONCURRENCY) for _ in range(CONCURRENCY)))
    return statuses


async def measure(app: ASGIApp, template: Template, customers: list[str], count: int) -> None:
    await _drive(app, template, customers, WARMUP_REQUESTS)
    started, database_started = time.process_time(), bench.database_cpu_seconds()
    _instrument(True)
    statuses = await _drive(app, template, customers, count)
    _instrument(False)
    cpu = time.process_time() - started
    database_cpu = bench.database_cpu_seconds() - database_started
    done = sum(statuses.values())
    print(
        f"{done} requests, {cpu / done * 1e6:,.0f} µs of CPU each "
        f"(PostgreSQL's: {database_cpu / done * 1e6:,.0f} µs), statuses {statuses}"
    )


def main() -> None:
    label = sys.argv[1] if len(sys.argv) > 1 else "POST usage/"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
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
                _run(database_url, redis_url, label, count)
            finally:
                asyncio.run(infra.flush_redis_database(redis_url, release=True))
        finally:
            asyncio.run(drop_database(server_url, name))


def _run(database_url: str, redis_url: str, label: str, count: int) -> None:
    dsn = database_url.replace("postgresql+asyncpg://", "postgresql://")
    with bench.uvicorn("tests.stripe.http_server:app", {}) as stripe:
        settings = make_settings(
            database_url, redis_url, STRIPE_WEBHOOK_SECRET=bench.WEBHOOK_SECRET,
            STRIPE_API_BASE=stripe.url, LOG_LEVEL="WARNING", TUNE_GARBAGE_COLLECTOR=True,
            **bench.RATE_LIMITS_OUT_OF_REACH,
        )  # fmt: skip
        configure_logging(settings, for_command=True)
        asyncio.run(bench.seed_catalog(settings))
    asyncio.run(bench.seed_accounts(dsn))
    customers = [str(bench.FIRST_CUSTOMER + number) for number in range(bench.BENCH_CUSTOMERS)]
    choices = {"customer": customers}
    if label.startswith("bare"):
        os.environ["BENCH_BARE_DSN"] = dsn
        from bench import bare_app

        against = "select" if "select" in label else "insert"
        spec = {"method": "GET" if against == "select" else "POST", "path": f"/bare-{against}"}
        app: Any = bare_app.api
    else:
        app = create_app(settings)
        general, usage = bench.paths(settings, app.openapi()["paths"])
        spec = next(path for path in general + usage if label in path.label).templates[0]

    async def started() -> None:
        async with app.router.lifespan_context(app):
            await measure(app, Template(spec, choices), customers, count)

    uvloop.run(started())


if __name__ == "__main__":
    main()
