"""Running the service: the migrations, the API server (as the image runs it), and the local
supervisor of the stores, the API and the worker."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from typing import Any

import typer
import uvicorn
from pydantic import SecretStr

from app.cli.catalog import install_catalog, report_catalog
from app.cli.common import local_jwt_secret
from app.cli.local_stripe import serve_local_stripe
from app.cli.stores import (
    DATA_DIR,
    DEV_DATABASE_NAME,
    command_stores,
    record_stores,
    remove_record,
)
from app.core.config import Settings, get_settings
from app.core.migrations import upgrade_to_head

# The worker with our logging in charge of arq's lines too (see app/worker.py).
WORKER_COMMAND = ["arq", "app.worker.WorkerSettings", "--custom-log-dict", "app.worker.log_config"]

# The key the API, the worker and the commands send to the local Stripe stand-in: a test
# key, so STRIPE_LIVE_MODE's check passes; the stand-in takes any.
LOCAL_STRIPE_KEY = "sk_test_local_stand_in"

dev_app = typer.Typer()


@dev_app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""

    async def run() -> None:
        async with command_stores(get_settings()) as settings:
            await asyncio.to_thread(upgrade_to_head, settings.database_url)

    asyncio.run(run())
    typer.echo("migrations applied")


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How uvicorn serves the API, in the image and under `billing dev` alike."""
    return {
        "host": settings.HOST,
        "port": settings.PORT,
        # X-Forwarded-For rewrites the client's address only when it comes from a configured
        # proxy; with none configured it is ignored (uvicorn would otherwise trust 127.0.0.1,
        # or whatever FORWARDED_ALLOW_IPS says, without our validation).
        "proxy_headers": bool(settings.FORWARDED_ALLOW_IPS),
        "forwarded_allow_ips": settings.FORWARDED_ALLOW_IPS or None,
        # The app logs each request itself (with its id and customer): no second access line.
        "access_log": False,
        # uvicorn's loggers are left to the app's logging (app.core.logging), set up when
        # the app is imported, before uvicorn logs its first line.
        "log_config": None,
    }


@dev_app.command()
def serve() -> None:
    """Serve the API (what the container runs after `billing migrate`)."""
    uvicorn.run("app.main:app", **uvicorn_options(get_settings()))


def _start_stores(settings: Settings, stack: ExitStack) -> dict[str, str]:
    """The URLs (and token secret) to run with: the configured ones, else local ones under
    .data/: embedded PostgreSQL and Redis, and a random JWT secret."""
    from app.core.embedded import (
        EmbeddedPostgres,
        EmbeddedRedis,
        create_database,
        database_url,
    )

    urls: dict[str, str] = {}
    if settings.JWT_SECRET is None and settings.JWT_ALGORITHM.startswith("HS"):
        urls["JWT_SECRET"] = local_jwt_secret(create=True) or ""
    if settings.DATABASE_URL:
        urls["DATABASE_URL"] = settings.DATABASE_URL
    else:
        postgres = stack.enter_context(EmbeddedPostgres(DATA_DIR / "postgres"))
        server_url = postgres.start()
        asyncio.run(create_database(server_url, DEV_DATABASE_NAME, if_missing=True))
        urls["DATABASE_URL"] = database_url(server_url, DEV_DATABASE_NAME)
        typer.echo(f"embedded PostgreSQL: {urls['DATABASE_URL']}")
    if settings.REDIS_URL:
        urls["REDIS_URL"] = settings.REDIS_URL
    else:
        redis = stack.enter_context(EmbeddedRedis(DATA_DIR / "redis"))
        urls["REDIS_URL"] = redis.start()
        typer.echo(f"embedded Redis: {urls['REDIS_URL']}")
    if settings.STRIPE_SECRET_KEY is None and not settings.STRIPE_API_BASE:
        stripe_url = serve_local_stripe(stack)
        if stripe_url is not None:
            urls["STRIPE_API_BASE"] = stripe_url
            urls["STRIPE_SECRET_KEY"] = LOCAL_STRIPE_KEY
            typer.echo(
                f"no STRIPE_SECRET_KEY: Stripe is the test kit's fake on {stripe_url} "
                "(nothing reaches Stripe; set STRIPE_SECRET_KEY to use your test account)"
            )
    return urls


def _supervise(processes: dict[str, subprocess.Popen[bytes]]) -> int:
    """Wait until one process exits or we are told to stop; then stop them all."""
    stopping = False

    def request_stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    exit_code = 0
    while not stopping:
        exited = [name for name, process in processes.items() if process.poll() is not None]
        if exited:
            returncode = processes[exited[0]].returncode
            exit_code = returncode or 1
            typer.echo(f"{exited[0]} exited ({returncode}); stopping everything", err=True)
            break
        time.sleep(0.2)
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    for process in processes.values():
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    return exit_code


@dev_app.command()
def dev() -> None:
    """Run the service locally: stores, migrations, default catalog, API and worker.

    With DATABASE_URL / REDIS_URL set it uses those servers; without, it starts an embedded
    PostgreSQL and Redis with their data under .data/. Ctrl-C stops everything.
    """
    settings = get_settings()
    with ExitStack() as stack:
        urls = _start_stores(settings, stack)
        update: dict[str, object] = dict(urls)
        for secret in ("JWT_SECRET", "STRIPE_SECRET_KEY"):
            if secret in urls:
                update[secret] = SecretStr(urls[secret])
        settings = settings.model_copy(update=update)
        upgrade_to_head(settings.database_url)
        report_catalog(asyncio.run(install_catalog(settings)))
        environment = {**os.environ, **urls}
        commands = {
            "api": [sys.executable, "-m", "app.cli", "serve"],
            "worker": [sys.executable, "-m", *WORKER_COMMAND],
        }
        # Own sessions: a terminal's Ctrl-C reaches only this supervisor, which then stops
        # the children in order (and the embedded stores after them).
        processes = {
            name: subprocess.Popen(command, env=environment, start_new_session=True)  # noqa: S603
            for name, command in commands.items()
        }
        # What `billing` commands in another terminal run against (app/cli/stores.py); the
        # token secret stays in its own file.
        record_stores({name: value for name, value in urls.items() if name != "JWT_SECRET"})
        stack.callback(remove_record)
        typer.echo(f"API on http://{settings.HOST}:{settings.PORT}/docs; Ctrl-C stops")
        exit_code = _supervise(processes)
    raise typer.Exit(exit_code)
