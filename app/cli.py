"""The `billing` command: operations on the service, and the local supervisor."""

import asyncio
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import httpx
import typer
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.billing_history import archive as billing_archive
from app.core.auth import ROLE_BILLING_ADMIN, ROLE_SERVICE, issue_access_token
from app.core.clock import SystemClock
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.migrations import upgrade_to_head
from app.plans.default_catalog import CatalogEntryOutcome, install_default_catalog
from app.plans.stripe_catalog import CatalogSyncReport, sync_catalog_to_stripe
from app.stripe_gateway.client import PINNED_API_VERSION, StripeGateway
from app.stripe_gateway.types import AccountState, WebhookEndpointState
from app.webhooks.admin_service import mark_for_replay
from app.webhooks.errors import WebhookEventNotFound
from app.webhooks.processing import ProcessingResult, process_event
from app.webhooks.samples import sample_event, signature_header

T = TypeVar("T")
WEBHOOK_PATH = "/subscriptions/api/stripe-webhook"

app = typer.Typer(no_args_is_help=True, help="Operate the billing service.")

DATA_DIR = Path(".data")
DEV_DATABASE_NAME = "billing"
# A local run's token secret: random per checkout, never in the repository.
DEV_JWT_SECRET_FILE = DATA_DIR / "dev-jwt-secret"


def _local_jwt_secret(*, create: bool) -> str | None:
    if DEV_JWT_SECRET_FILE.exists():
        return DEV_JWT_SECRET_FILE.read_text().strip()
    if not create:
        return None
    DATA_DIR.mkdir(exist_ok=True)
    secret = secrets.token_urlsafe(48)
    DEV_JWT_SECRET_FILE.write_text(secret)
    DEV_JWT_SECRET_FILE.chmod(0o600)
    return secret


@app.command()
def migrate() -> None:
    """Apply the database migrations (alembic upgrade head)."""
    upgrade_to_head(get_settings().database_url)
    typer.echo("migrations applied")


async def _setup_packages(settings: Settings) -> list[CatalogEntryOutcome]:
    engine = create_engine(settings)
    try:
        async with create_sessionmaker(engine)() as session, session.begin():
            return await install_default_catalog(
                session, billing_currency=settings.BILLING_CURRENCY
            )
    finally:
        await engine.dispose()


def _report_catalog(outcomes: list[CatalogEntryOutcome]) -> None:
    for entry in outcomes:
        line = f"{entry.kind} {entry.slug}: {entry.outcome}"
        if entry.differences:
            line += f" from the default ({', '.join(entry.differences)}); left as it is"
        typer.echo(line)
    if all(entry.outcome != "created" for entry in outcomes):
        typer.echo("nothing to do: the default catalog is installed")


@app.command("setup-packages")
def setup_packages() -> None:
    """Create the default plans (Starter, Professional, Enterprise) and add-ons; idempotent."""
    _report_catalog(asyncio.run(_setup_packages(get_settings())))


@app.command("issue-token")
def issue_token(
    user_id: Annotated[str, typer.Option(help="The dashboard user id the token speaks for.")],
    role: Annotated[
        list[str] | None,
        typer.Option(help=f"A role to grant ({ROLE_BILLING_ADMIN}, {ROLE_SERVICE}); repeatable."),
    ] = None,
    email: Annotated[str | None, typer.Option(help="An email claim.")] = None,
    expires_in: Annotated[int, typer.Option(help="Lifetime in seconds.", min=1)] = 3600,
    private_key_file: Annotated[
        Path | None,
        typer.Option(help="PEM private key, for RS256/ES256 (HS256 signs with JWT_SECRET)."),
    ] = None,
) -> None:
    """Print an access token shaped like the dashboard's (SimpleJWT), for local use.

    Signs with JWT_SECRET, or with the local secret that `make run` keeps under .data/.
    """
    settings = get_settings()
    if settings.JWT_SECRET is None and settings.JWT_ALGORITHM.startswith("HS"):
        local_secret = _local_jwt_secret(create=False)
        if local_secret is None:
            typer.echo("JWT_SECRET is not set and `make run` has not made a local one", err=True)
            raise typer.Exit(2)
        settings = settings.model_copy(update={"JWT_SECRET": SecretStr(local_secret)})
    signing_key = private_key_file.read_text() if private_key_file else None
    if not settings.JWT_ALGORITHM.startswith("HS") and signing_key is None:
        typer.echo(f"{settings.JWT_ALGORITHM} needs --private-key-file", err=True)
        raise typer.Exit(2)
    token = issue_access_token(
        settings,
        user_id=user_id,
        roles=role or [],
        now=SystemClock().now(),
        lifetime=timedelta(seconds=expires_in),
        signing_key=signing_key,
        email=email,
    )
    typer.echo(token)


async def _with_stripe(settings: Settings, work: Callable[..., Awaitable[T]]) -> T:
    """Run `work(sessionmaker, gateway)` with a database and the Stripe gateway."""
    engine = create_engine(settings)
    try:
        return await work(create_sessionmaker(engine), StripeGateway(settings))
    finally:
        await engine.dispose()


def _print_catalog_reports(reports: list[CatalogSyncReport]) -> None:
    for report in reports:
        for action in report.actions:
            typer.echo(f"{report.entry}: {action}")
        for difference in report.differences:
            typer.echo(f"{report.entry}: differs: {difference}")
    if not any(report.actions for report in reports):
        typer.echo("nothing created or changed on Stripe")


@app.command("create-stripe-products")
def create_stripe_products(
    force_update: Annotated[
        bool,
        typer.Option(
            "--force-update",
            help="Replace prices whose amount changed (new price, old one archived).",
        ),
    ] = False,
) -> None:
    """Create the Stripe products and prices of every plan and add-on; idempotent."""

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway
    ) -> list[CatalogSyncReport]:
        return await sync_catalog_to_stripe(
            sessionmaker=sessionmaker, gateway=gateway, force_update=force_update
        )

    reports = asyncio.run(_with_stripe(get_settings(), work))
    _print_catalog_reports(reports)
    if any(report.differences for report in reports) and not force_update:
        typer.echo("run with --force-update to replace the differing prices")


@app.command("check-stripe")
def check_stripe() -> None:
    """Report the key's mode, the account, the catalog's sync and the webhook endpoint."""
    settings = get_settings()
    key = settings.STRIPE_SECRET_KEY.get_secret_value() if settings.STRIPE_SECRET_KEY else ""
    typer.echo(f"key mode: {'live' if '_live_' in key else 'test' if key else 'no key set'}")

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway
    ) -> tuple[AccountState, list[CatalogSyncReport], list[WebhookEndpointState]]:
        account = await gateway.retrieve_account()
        reports = await sync_catalog_to_stripe(
            sessionmaker=sessionmaker, gateway=gateway, force_update=False, dry_run=True
        )
        return account, reports, await gateway.list_webhook_endpoints()

    account, reports, endpoints = asyncio.run(_with_stripe(settings, work))
    typer.echo(
        f"account: {account.id} ({account.display_name or 'no name'}), livemode={account.livemode}"
    )
    out_of_sync = [report for report in reports if report.differences]
    if out_of_sync:
        _print_catalog_reports(out_of_sync)
        typer.echo("catalog: out of sync; run `billing create-stripe-products`")
    else:
        typer.echo("catalog: in sync")
    ours = [e for e in endpoints if e.url.rstrip("/").endswith(WEBHOOK_PATH)]
    if not ours:
        typer.echo(f"webhook endpoint: none ends with {WEBHOOK_PATH}/")
    for endpoint in ours:
        version_note = (
            "pinned version" if endpoint.api_version == PINNED_API_VERSION
            else f"version {endpoint.api_version}, not the pinned {PINNED_API_VERSION}"
        )  # fmt: skip
        typer.echo(f"webhook endpoint: {endpoint.url} ({endpoint.status}, {version_note})")


@app.command("replay-webhook")
def replay_webhook(
    event_id: Annotated[str, typer.Argument(help="The Stripe event id, evt_...")],
) -> None:
    """Process a stored Stripe event again, here and now (after a fix, say)."""
    settings = get_settings()

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway
    ) -> ProcessingResult:
        clock = SystemClock()
        async with sessionmaker.begin() as session:
            await mark_for_replay(session, clock=clock, stripe_event_id=event_id)
        return await process_event(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=clock,
            stripe_event_id=event_id,
            max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
        )

    try:
        result = asyncio.run(_with_stripe(settings, work))
    except WebhookEventNotFound:
        typer.echo(f"no stored event {event_id}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{event_id}: {result.outcome} (attempt {result.attempts})")
    if result.outcome in ("retry", "failed"):
        raise typer.Exit(1)


@app.command("test-webhook")
def test_webhook(
    event_type: Annotated[str, typer.Argument(help="e.g. invoice.paid")],
    url: Annotated[
        str | None, typer.Option(help="Default: this service's endpoint on HOST:PORT.")
    ] = None,
) -> None:
    """Send a correctly signed sample event (from Stripe's fixtures) to a running service."""
    settings = get_settings()
    secrets_list = settings.stripe_webhook_secrets
    if not secrets_list:
        typer.echo("STRIPE_WEBHOOK_SECRET is not set", err=True)
        raise typer.Exit(2)
    now = int(SystemClock().now().timestamp())
    event = sample_event(event_type, api_version=PINNED_API_VERSION, created=now)
    payload = json.dumps(event).encode()
    target = url or f"http://{settings.HOST}:{settings.PORT}{WEBHOOK_PATH}/"
    response = httpx.post(
        target,
        content=payload,
        headers={
            "Content-Type": "application/json",
            "Stripe-Signature": signature_header(payload, secrets_list[0], now),
        },
        timeout=10,
    )
    typer.echo(f"{event['id']} ({event_type}) -> {response.status_code} {response.text}")
    if response.status_code != 200:
        raise typer.Exit(1)


@app.command("reconcile")
def reconcile_stripe(
    fix: Annotated[
        bool, typer.Option("--fix", help="Repair local state from Stripe where they differ.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="List Stripe's events from this ISO date or time (UTC unless it says "
            "otherwise); default: from the newest event stored."
        ),
    ] = None,
) -> None:
    """Process the Stripe events never received, then compare subscriptions, invoices and
    cards with Stripe and print the drift; exit code 1 while drift remains."""
    from datetime import UTC, datetime

    from app.webhooks.reconcile import ReconcileReport, drift_table, reconcile_with_stripe

    settings = get_settings()
    start: datetime | None = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
        except ValueError:
            raise typer.BadParameter("not an ISO date", param_hint="--since") from None
        start = start if start.tzinfo else start.replace(tzinfo=UTC)

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway
    ) -> ReconcileReport:
        return await reconcile_with_stripe(
            sessionmaker=sessionmaker,
            gateway=gateway,
            clock=SystemClock(),
            fix=fix,
            since=start,
            max_attempts=settings.WEBHOOK_MAX_ATTEMPTS,
        )

    report = asyncio.run(_with_stripe(settings, work))
    catch_up = report.catch_up
    outcomes = ", ".join(
        f"{count} {outcome}" for outcome, count in sorted(catch_up.outcomes.items())
    )
    typer.echo(
        f"events: {catch_up.listed} on Stripe since "
        f"{catch_up.since.isoformat() if catch_up.since else 'the start of its 30 days'}, "
        f"{catch_up.stored} new" + (f" ({outcomes})" if outcomes else "")
    )
    if not report.found:
        typer.echo("drift: none")
        return
    typer.echo(f"drift: {len(report.found)}")
    for line in drift_table(report.found):
        typer.echo(line)
    if fix:
        typer.echo(f"repaired: {report.repaired} objects")
        if report.remaining:
            typer.echo(f"drift remaining: {len(report.remaining)}")
            for line in drift_table(report.remaining):
                typer.echo(line)
        else:
            typer.echo("drift remaining: none")
    else:
        typer.echo("run with --fix to repair local state from Stripe")
    if report.remaining:
        raise typer.Exit(1)


def _age_in_days(value: str) -> int:
    """`730d` → 730: the age for --older-than, in whole days."""
    match = re.fullmatch(r"(-?\d+)d", value.strip().lower())
    if match is None:
        raise typer.BadParameter(
            f"{value!r} is not an age; write a number of days such as 730d",
            param_hint="--older-than",
        )
    days = int(match.group(1))
    if days < 1:
        raise typer.BadParameter(
            f"{value!r}: the age must be a positive number of days, such as 730d",
            param_hint="--older-than",
        )
    return days


@app.command("archive-billing-records")
def archive_billing_records(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than",
            help="Archive settled rows older than this many days, written like 730d.",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would move; move nothing.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=100_000, help="Rows per transaction.")
    ] = billing_archive.DEFAULT_BATCH_SIZE,
) -> None:
    """Move settled billing-history rows older than --older-than to the archive table, a
    transaction per batch. Archived rows keep their ids, stay listed with
    include_archived=true and keep their PDFs. Safe to stop and run again: it carries on.
    Prints the counts before and after; exit code 1 when the totals differ."""
    days = _age_in_days(older_than)
    clock = SystemClock()
    try:
        billing_archive.archive_cutoff(clock.now(), older_than_days=days)
    except OverflowError:
        raise typer.BadParameter(
            f"{older_than!r} reaches back before the year 1", param_hint="--older-than"
        ) from None

    def counted(cutoff: datetime, before: billing_archive.BillingRecordCounts) -> None:
        typer.echo(f"cutoff: {cutoff.isoformat()} (settled rows older than {days} days)")
        typer.echo(
            f"before: hot {before.hot}, archived {before.archived}, total {before.total} "
            f"(ids up to {before.up_to_id}); eligible {before.eligible}"
        )

    def batch_done(batch: billing_archive.ArchivedBatch) -> None:
        typer.echo(f"batch {batch.number}: {batch.moved} moved ({batch.moved_so_far} so far)")

    async def work() -> billing_archive.ArchiveRun:
        engine = create_engine(get_settings())
        try:
            return await billing_archive.archive_billing_records(
                create_sessionmaker(engine),
                clock=clock,
                older_than_days=days,
                batch_size=batch_size,
                dry_run=dry_run,
                on_counted=counted,
                on_batch=batch_done,
            )
        finally:
            await engine.dispose()

    started = time.monotonic()
    try:
        run = asyncio.run(work())
    except KeyboardInterrupt:
        typer.echo(
            "interrupted: the batches committed so far stay archived, the one in flight was "
            "rolled back; run the command again to carry on",
            err=True,
        )
        raise typer.Exit(130) from None
    if run.after is None:
        typer.echo(
            f"dry run: {run.before.eligible} rows would move, in batches of {batch_size}; "
            "nothing moved"
        )
        return
    after = run.after
    typer.echo(
        f"after: hot {after.hot}, archived {after.archived}, total {after.total}; "
        f"eligible left {after.eligible}"
    )
    typer.echo(
        f"moved {run.moved} rows in {run.batches} batches ({time.monotonic() - started:.1f} s)"
    )
    if after.eligible:
        typer.echo(
            f"{after.eligible} eligible rows were busy or changed during the run; "
            "the next run takes them"
        )
    if not run.totals_match:
        typer.echo(
            f"totals differ: {run.before.total} before, {after.total} after; find what "
            "added or deleted billing rows among the counted ids before running again",
            err=True,
        )
        raise typer.Exit(1)


@app.command("import-stripe")
def import_stripe() -> None:
    """Adopt the customers, live subscriptions and cards already in the Stripe account (the
    old module's), matched by metadata `dashboard_user_id`, else email; idempotent."""
    from app.customers.stripe_import import ImportReport, import_from_stripe

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway
    ) -> ImportReport:
        return await import_from_stripe(
            sessionmaker=sessionmaker, gateway=gateway, clock=SystemClock()
        )

    report = asyncio.run(_with_stripe(get_settings(), work))
    for note in report.adopted:
        typer.echo(f"adopted {note.kind} {note.stripe_id}: {note.detail}")
    for note in report.not_adopted:
        typer.echo(f"not adopted {note.kind} {note.stripe_id}: {note.detail}")
    for note in report.unmatched:
        typer.echo(f"unmatched {note.kind} {note.stripe_id}: {note.detail}")
    counts = {
        kind: sum(note.kind == kind for note in report.adopted)
        for kind in ("customer", "subscription", "card")
    }
    typer.echo(
        f"adopted {counts['customer']} customers, {counts['subscription']} subscriptions, "
        f"{counts['card']} cards; {len(report.not_adopted)} not adopted; "
        f"{len(report.unmatched)} unmatched"
    )


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
        urls["JWT_SECRET"] = _local_jwt_secret(create=True) or ""
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


@app.command()
def dev() -> None:
    """Run the service locally: stores, migrations, default catalog, API and worker.

    With DATABASE_URL / REDIS_URL set it uses those servers; without, it starts an embedded
    PostgreSQL and Redis with their data under .data/. Ctrl-C stops everything.
    """
    settings = get_settings()
    with ExitStack() as stack:
        urls = _start_stores(settings, stack)
        settings = settings.model_copy(
            update={**urls, "JWT_SECRET": SecretStr(urls["JWT_SECRET"])}
            if "JWT_SECRET" in urls
            else urls
        )
        upgrade_to_head(settings.database_url)
        _report_catalog(asyncio.run(_setup_packages(settings)))
        environment = {**os.environ, **urls}
        commands = {
            "api": [sys.executable, "-m", "uvicorn", "app.main:app", "--host", settings.HOST,
                    "--port", str(settings.PORT)],
            "worker": [sys.executable, "-m", "arq", "app.worker.WorkerSettings"],
        }  # fmt: skip
        # Own sessions: a terminal's Ctrl-C reaches only this supervisor, which then stops
        # the children in order (and the embedded stores after them).
        processes = {
            name: subprocess.Popen(command, env=environment, start_new_session=True)  # noqa: S603
            for name, command in commands.items()
        }
        typer.echo(f"API on http://{settings.HOST}:{settings.PORT}/docs; Ctrl-C stops")
        exit_code = _supervise(processes)
    raise typer.Exit(exit_code)


if __name__ == "__main__":
    app()
