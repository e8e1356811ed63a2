"""Local state against the Stripe account: checking the setup, reconciling the drift, and
adopting what the account already holds."""

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli.catalog import print_catalog_reports
from app.cli.common import with_stripe
from app.cli.webhooks import WEBHOOK_PATH
from app.core.clock import SystemClock
from app.core.config import get_settings
from app.plans.stripe_catalog import CatalogSyncReport, sync_catalog_to_stripe
from app.stripe_gateway.client import PINNED_API_VERSION, StripeGateway
from app.stripe_gateway.types import AccountState, WebhookEndpointState

stripe_sync_app = typer.Typer()


@stripe_sync_app.command("check-stripe")
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

    account, reports, endpoints = asyncio.run(with_stripe(settings, work))
    typer.echo(
        f"account: {account.id} ({account.display_name or 'no name'}), livemode={account.livemode}"
    )
    out_of_sync = [report for report in reports if report.differences]
    if out_of_sync:
        print_catalog_reports(out_of_sync)
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


@stripe_sync_app.command("reconcile")
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
    from app.stripe_sync.reconcile import ReconcileReport, drift_table, reconcile_with_stripe

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

    report = asyncio.run(with_stripe(settings, work))
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


@stripe_sync_app.command("import-stripe")
def import_stripe() -> None:
    """Adopt the customers, live subscriptions and cards already in the Stripe account (the
    old module's), matched by metadata `dashboard_user_id`, else email; idempotent."""
    from app.stripe_sync.stripe_import import ImportReport, import_from_stripe

    async def work(
        sessionmaker: async_sessionmaker[AsyncSession], gateway: StripeGateway
    ) -> ImportReport:
        return await import_from_stripe(
            sessionmaker=sessionmaker, gateway=gateway, clock=SystemClock()
        )

    report = asyncio.run(with_stripe(get_settings(), work))
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
