"""The plans and add-ons: installing the default catalog, and creating it on Stripe."""

import asyncio
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli.common import with_database, with_stripe
from app.core.config import Settings, get_settings
from app.plans.default_catalog import CatalogEntryOutcome, install_default_catalog
from app.plans.stripe_catalog import CatalogSyncReport, sync_catalog_to_stripe
from app.stripe_gateway.client import StripeGateway

catalog_app = typer.Typer()


async def install_catalog(settings: Settings) -> list[CatalogEntryOutcome]:
    async def work(sessionmaker: async_sessionmaker[AsyncSession]) -> list[CatalogEntryOutcome]:
        async with sessionmaker() as session, session.begin():
            return await install_default_catalog(
                session, billing_currency=settings.BILLING_CURRENCY
            )

    return await with_database(settings, work)


def report_catalog(outcomes: list[CatalogEntryOutcome]) -> None:
    for entry in outcomes:
        line = f"{entry.kind} {entry.slug}: {entry.outcome}"
        if entry.differences:
            line += f" from the default ({', '.join(entry.differences)}); left as it is"
        typer.echo(line)
    if all(entry.outcome != "created" for entry in outcomes):
        typer.echo("nothing to do: the default catalog is installed")


def print_catalog_reports(reports: list[CatalogSyncReport]) -> None:
    for report in reports:
        for action in report.actions:
            typer.echo(f"{report.entry}: {action}")
        for difference in report.differences:
            typer.echo(f"{report.entry}: differs: {difference}")
    if not any(report.actions for report in reports):
        typer.echo("nothing created or changed on Stripe")


@catalog_app.command("setup-packages")
def setup_packages() -> None:
    """Create the default plans (Starter, Professional, Enterprise) and add-ons; idempotent."""
    report_catalog(asyncio.run(install_catalog(get_settings())))


@catalog_app.command("create-stripe-products")
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

    reports = asyncio.run(with_stripe(get_settings(), work))
    print_catalog_reports(reports)
    if any(report.differences for report in reports) and not force_update:
        typer.echo("run with --force-update to replace the differing prices")
